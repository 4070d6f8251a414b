"""Demo pipelines that fill a lake with realistic runs (`xray-lake demo`, examples/).

The pipelines live in `xray_lake.demo.fashion_search` (imported on use, not here, so that
`python -m xray_lake.demo.fashion_search` runs without a double import).
"""
