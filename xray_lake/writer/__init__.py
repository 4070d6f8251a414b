"""The background writer: buffers records in memory and publishes them as Parquet files."""
