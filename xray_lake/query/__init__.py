"""Reading the lake: DuckDB views, SQL to polars, and the query front ends."""
