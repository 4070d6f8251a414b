"""Demo pipelines that fill a lake with realistic runs (`xray-lake demo`, examples/).

The demo runs from `xray_lake.demo.fashion_search` (its pipeline and the demo loop; the
catalog is in `catalog`, the second pipeline in `similar_items`), imported on use, not here,
so that `python -m xray_lake.demo.fashion_search` runs without a double import.
"""
