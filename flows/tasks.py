"""Thin Prefect tasks over the core functions. Tasks exchange paths, never DataFrames.

Retries with back-off only where I/O can fail transiently (reading, publishing); deterministic
stages fail fast. No result caching yet: a rerun recomputes every stage from the input.
"""

from datetime import date
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from expectations.runner import CLEAN_FILE, validate_file
from nightrec.config import NightrecConfig
from nightrec.publish import publish_duckdb, publish_parquet
from nightrec.recommend import popularity_recommendations
from nightrec.runs import default_run_date, ingest

RECOMMENDATIONS_FILE = "recommendations.parquet"
IO_RETRIES = {"retries": 2, "retry_delay_seconds": [5, 30]}


@task(name="resolve-run-date", cache_policy=NO_CACHE, timeout_seconds=600, **IO_RETRIES)
def resolve_run_date(config: NightrecConfig) -> date:
    return config.run_date or default_run_date(config)


@task(name="ingest", cache_policy=NO_CACHE, timeout_seconds=3600, **IO_RETRIES)
def ingest_events(config: NightrecConfig, run_date: date) -> Path:
    return ingest(config, run_date)


@task(name="validate", cache_policy=NO_CACHE, timeout_seconds=3600)
def validate_events(events_path: Path, config: NightrecConfig, run_date: date) -> tuple[Path, dict]:
    summary = validate_file(events_path, config, run_date)
    return events_path.parent / CLEAN_FILE, summary


@task(name="popularity-fallback", cache_policy=NO_CACHE, timeout_seconds=3600)
def recommend_popularity(clean_path: Path, config: NightrecConfig, run_date: date) -> Path:
    recs = popularity_recommendations(pl.read_parquet(clean_path), run_date, config)
    out = clean_path.parent / RECOMMENDATIONS_FILE
    recs.write_parquet(out)
    return out


@task(name="publish", cache_policy=NO_CACHE, timeout_seconds=3600, **IO_RETRIES)
def publish(recs_path: Path, config: NightrecConfig, run_date: date) -> dict:
    recs = pl.read_parquet(recs_path)
    targets: dict[str, str] = {}
    if config.publish.parquet or config.publish.duckdb:
        targets["parquet"] = str(publish_parquet(recs, config.data_dir, run_date))
    if config.publish.duckdb:
        targets["duckdb"] = str(publish_duckdb(config.data_dir, config.duckdb_path))
    return {"rows": recs.height, "users": recs.get_column("user_id").n_unique(), "targets": targets}
