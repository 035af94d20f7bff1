"""Publishing an intra-day refresh: the complete new lists of the users re-scored since the
nightly run of ``run_date``, to every target the nightly publishes to, as one transaction.

The nightly partition stays byte for byte as published; the refresh is a file of its own
(``nightrec.publish.refresh_files``). The DuckDB file keeps the nightly's swap discipline: a copy
of the live file gets those users' lists replaced in one transaction and is renamed over it.
PostgreSQL replaces them in one transaction. Every target swaps a user's whole list at once, so
``recommendations_latest`` serves each user the newest of the nightly and refresh lists and a
reader never sees a mix of two runs. The nightly's journal ties the targets together: a failure
puts the refresh folder and the DuckDB file back, a killed publish is undone (or kept, when
PostgreSQL committed) by the next publish's ``recover``.
"""

import os
import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from nightrec.config import NightrecConfig
from nightrec.errors import NightrecError
from nightrec.publish.journal import PublishJournal, fsync, recover, remove_stale, staging_dir
from nightrec.publish.local import (
    PART_FILE,
    TABLE,
    partition_dir,
    postgres_committed,
    publish_duckdb,
    staged_file,
)
from nightrec.publish.refresh_files import (
    REFRESH_TABLE,  # noqa: F401  (re-exported beside publish_refresh)
    apply_refresh,
    refresh_dir,
    refresh_file_name,
    refresh_files,
)
from nightrec.schema import RECOMMENDATION_SCHEMA, REFRESHED_AT, RUN_DATE, USER_ID, conform


def _refresh_rows(recs: pl.DataFrame, run_date: date, refreshed_at: datetime) -> pl.DataFrame:
    """The rows to publish, each stamped with the refresh time; refuses rows of another night."""
    if refreshed_at.tzinfo is None:
        raise NightrecError("refresh: refreshed_at must carry a time zone (a naive time is ambiguous)")
    stamp = pl.lit(refreshed_at.astimezone(UTC), RECOMMENDATION_SCHEMA[REFRESHED_AT])
    recs = conform(recs.with_columns(stamp.alias(REFRESHED_AT)))
    others = recs.filter(pl.col(RUN_DATE).ne_missing(run_date)).get_column(RUN_DATE).unique().sort()
    if len(others):
        found = ", ".join(str(d) for d in others.to_list())
        raise NightrecError(f"refresh of {run_date}: {len(others)} other run date(s) among the rows ({found})")
    return recs


def _require_night(data_dir: Path, run_date: date, refreshed_at: datetime) -> None:
    """A refresh extends a published night, and is newer than the refreshes already laid on it."""
    if not (partition_dir(data_dir, run_date) / PART_FILE).is_file():
        raise NightrecError(
            f"refresh of {run_date}: no nightly is published for that date (a refresh replaces some "
            "users' lists of a published night; publish the nightly first)"
        )
    done = refresh_files(data_dir, run_date)
    if done and done[-1].name > refresh_file_name(refreshed_at):
        raise NightrecError(
            f"refresh of {run_date}: {refreshed_at.isoformat()} is older than the refresh already "
            f"published ({done[-1].name}); its lists would hide newer ones"
        )


def _write_refresh(recs: pl.DataFrame, data_dir: Path, run_date: date, refreshed_at: datetime) -> Path:
    """Write the refresh file in the staging folder and rename it into place: complete or absent."""
    final = refresh_dir(data_dir, run_date) / refresh_file_name(refreshed_at)
    staging = staging_dir(data_dir)
    remove_stale(staging, "tmp-")
    tmp = staging / f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}"
    try:
        recs.write_parquet(tmp)
        fsync(tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fsync(final.parent)
    return final


def _refresh_duckdb(data_dir: Path, db_path: Path, run_date: date, file: Path, keep: int) -> Path:
    """Lay ``file`` over a copy of the live DuckDB file in one transaction and swap the copy in.

    Without a live file to copy (DuckDB enabled since the nightly) the file is rebuilt, which
    applies every refresh of the kept dates, this one included.
    """
    if not db_path.is_file():
        return publish_duckdb(data_dir, db_path, keep)
    with staged_file(db_path) as tmp:
        shutil.copyfile(db_path, tmp)
        with duckdb.connect(str(tmp)) as con:
            con.execute("BEGIN")
            # a file the nightly of an earlier version built has no such column
            con.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {REFRESHED_AT} TIMESTAMPTZ")
            apply_refresh(con, TABLE, run_date, file)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
    return db_path


def publish_refresh(recs: pl.DataFrame, config: NightrecConfig, run_date: date, refreshed_at: datetime) -> dict:
    """Publish the complete new lists of the users a refresh re-scored (``recs``, the published
    schema, every row of ``run_date``) to every configured target as one transaction.

    Each row gets ``refreshed_at`` (a time-zone-aware time, stored in UTC). The nightly of
    ``run_date`` must be published, and ``refreshed_at`` must not be older than a refresh
    already published for that date. Order, as the nightly's: the refresh file, the DuckDB file,
    PostgreSQL, then the journal's commit.

    Returns ``rows``, ``users``, ``refreshed_at`` (ISO) and ``targets``; no rows publishes
    nothing and says so in ``skipped``.
    """
    recs = _refresh_rows(recs, run_date, refreshed_at)
    summary: dict = {
        "rows": recs.height,
        "users": recs.get_column(USER_ID).n_unique(),
        "refreshed_at": refreshed_at.astimezone(UTC).isoformat(),
        "targets": {},
    }
    if recs.is_empty():
        summary["skipped"] = "no user to refresh: every target keeps its lists"
        return summary
    pub = config.publish
    recovered = recover(config.data_dir, postgres_committed(config))
    if recovered:
        summary["recovered"] = recovered
    files = pub.parquet or pub.duckdb  # the DuckDB file is built from the Parquet history
    if files:
        _require_night(config.data_dir, run_date, refreshed_at)
    pg = None if pub.postgres_url is None else {"schema": pub.postgres_schema, "table": pub.postgres_table}
    db_path = config.duckdb_path if pub.duckdb else None
    journal = PublishJournal.begin(config.data_dir, refresh_dir(config.data_dir, run_date), db_path, pg)
    try:
        if files:
            written = _write_refresh(recs, config.data_dir, run_date, refreshed_at)
            summary["targets"]["parquet"] = str(written)
        if db_path is not None:
            db = _refresh_duckdb(config.data_dir, db_path, run_date, written, pub.retention_days)
            summary["targets"]["duckdb"] = str(db)
        if pg is not None:
            from nightrec.publish.postgres import refresh_postgres

            summary["targets"]["postgres"] = refresh_postgres(
                recs, pub.postgres_url, run_date, pub.postgres_schema, pub.postgres_table, txn=journal.txn
            )
        journal.commit()
    except BaseException:
        journal.rollback()
        raise
    journal.close()
    return summary
