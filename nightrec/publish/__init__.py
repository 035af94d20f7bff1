"""Publish: the nightly table as a Parquet partition, an embedded DuckDB file and optionally PostgreSQL."""
