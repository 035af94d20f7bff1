"""Publishing one night to every configured target, all or nothing: if any target fails, the
run date's partition goes back to what it was and the DuckDB file is rebuilt from it, so readers
keep the previous table."""

import shutil
import uuid
from datetime import date
from pathlib import Path

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.publish.local import partition_dir, publish_all, publish_duckdb


def publish_night(recs_path: Path, fallback_path: Path, config: NightrecConfig, run_date: date) -> dict:
    """Publish to every configured target (``nightrec.publish.local.publish_all``). If any target fails,
    the run date's partition goes back to what it was and the DuckDB file is rebuilt from it, so
    readers keep the previous table."""
    recs, new_users = pl.read_parquet(recs_path), pl.read_parquet(fallback_path)
    final = partition_dir(config.data_dir, run_date)
    backup = final.with_name(f".bak-{final.name}-{uuid.uuid4().hex[:8]}") if final.exists() else None
    if backup is not None:
        shutil.copytree(final, backup)
    db_before = _stat(config.duckdb_path)
    try:
        published = publish_all(recs, config, run_date, new_users)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        if backup is not None:
            backup.rename(final)
        if config.publish.duckdb and _stat(config.duckdb_path) != db_before:
            publish_duckdb(config.data_dir, config.duckdb_path)  # the swap had happened: swap back
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return published


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns
