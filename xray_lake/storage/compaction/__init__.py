"""Compaction: merge each partition's small Parquet files into large sorted ones, safely for readers.

Modules, in the order data flows:

- `protocol`: the on-disk contract (folders, markers, epoch, merged names, file-name rules);
  the only module readers and replay import.
- `report`: what a pass did. `plan`: which files merge, and the pass shared by both stores.
- `locks`: partition locks (exclusive create locally, conditional PUTs on object storage).
- `local` and `remote`: the merge steps of each store. `api`: `compact()`, the entry point.
- `background`: the writer's daemon that compacts sealed partitions on its own.

This file imports nothing, so importing `protocol` loads neither pyarrow nor the compactors.
"""
