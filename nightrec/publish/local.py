"""Publishing the nightly table: a Parquet partition per run date, an embedded DuckDB file and,
optionally, PostgreSQL (``nightrec.publish.postgres``).

Every swap is atomic for readers and idempotent per run date. A partition's files are written
in a temporary folder and renamed into place (a new date renames the folder, a rerun replaces
each file with ``os.replace``). The DuckDB file is rebuilt beside the live one from the kept
partitions and renamed over it: DuckDB locks a file it has open for writing against every other
process, so the live file is only ever opened read-only and a killed writer leaves it untouched.
The rebuild lays each kept date's intra-day refreshes (``nightrec.publish.refresh_files``) over
its partition, and retention deletes them with it.
"""

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from nightrec.config import NightrecConfig
from nightrec.layout import FALLBACK_FILE
from nightrec.publish.journal import (
    PublishJournal,
    fsync,
    owner_dead,
    recover,
    remove_path,
    remove_stale,
    staging_dir,
)
from nightrec.publish.refresh_files import apply_refresh, refresh_dir, refresh_files
from nightrec.schema import (
    FALLBACK_SCHEMA,
    MODEL_VERSION,
    RANK,
    RECOMMENDATION_SCHEMA,
    RUN_DATE,
    SOURCE,
    TIMESTAMP_DTYPE,
    USER_ID,
    conform,
    is_model_version,
)

TABLE = "recommendations"
LATEST_VIEW = "recommendations_latest"
FALLBACK_TABLE = "recommendations_fallback"
PART_FILE = "part-0.parquet"
MANIFEST_FILE = "_manifest.json"
PARTITION_PREFIX = "run_date="
_DUCK_TYPES = {pl.Date: "DATE", pl.String: "VARCHAR", pl.Int32: "INTEGER", pl.Float64: "DOUBLE"}
_DUCK_TYPES[TIMESTAMP_DTYPE] = "TIMESTAMPTZ"


def partition_dir(data_dir: Path, run_date: date) -> Path:
    return Path(data_dir) / TABLE / f"{PARTITION_PREFIX}{run_date.isoformat()}"


def _nothing(recs: pl.DataFrame, fallback: pl.DataFrame | None) -> bool:
    return recs.is_empty() and (fallback is None or fallback.is_empty())


def published_dates(data_dir: Path) -> list[date]:
    """Run dates with a complete partition, oldest first."""
    root = Path(data_dir) / TABLE
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.name.startswith(PARTITION_PREFIX) and (child / PART_FILE).is_file():
            try:
                found.append(date.fromisoformat(child.name[len(PARTITION_PREFIX) :]))
            except ValueError:
                continue
    return sorted(found)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_manifest(recs: pl.DataFrame, run_date: date, part_file: Path) -> dict:
    """What one run published: rows, users, rows per source, model version and a checksum."""
    versions = recs.get_column(MODEL_VERSION).unique().sort().to_list()
    model = [v for v in versions if is_model_version(v)]
    counts = recs.group_by(SOURCE).len().sort(SOURCE)
    return {
        "run_date": run_date.isoformat(),
        "rows": recs.height,
        "users": recs.get_column(USER_ID).n_unique(),
        "source_counts": dict(zip(counts.get_column(SOURCE), counts.get_column("len"), strict=True)),
        "model_version": model[0] if model else (versions[0] if versions else None),
        "model_versions": versions,
        "checksum": f"sha256:{file_sha256(part_file)}",
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _clear_leftovers(root: Path) -> None:
    """Remove what killed writers of earlier versions left among the partitions: stale
    ``.tmp-``/``.old-`` folders and the ``.bak-run_date=...`` copies of a crashed rerun, which
    readers globbing ``recommendations/*/`` would otherwise count as one more night."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name.startswith(".bak-") or owner_dead(child.name, ".tmp-") or owner_dead(child.name, ".old-"):
            remove_path(child)


def publish_parquet(
    recs: pl.DataFrame, data_dir: Path, run_date: date, fallback: pl.DataFrame | None = None
) -> Path | None:
    """Write ``recommendations/run_date=YYYY-MM-DD/`` (``part-0.parquet``, the new-user
    ``fallback.parquet`` and ``_manifest.json``) via a temporary folder and renames.

    A rerun of the same date replaces that partition; it never appends to it. A night with no
    rows and no new-user list publishes nothing (returns None), so the table keeps the last good
    run; one with only a new-user list (every user has seen every item) publishes that list.
    """
    recs = conform(recs)
    if _nothing(recs, fallback):
        return None
    final = partition_dir(data_dir, run_date)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(final.parent)
    staging = staging_dir(data_dir)
    remove_stale(staging, "tmp-")
    remove_stale(staging, "old-")
    tmp = staging / f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}"
    tmp.mkdir()
    try:
        _fill_partition(tmp, final, recs, run_date, fallback)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fsync(final.parent)
    return final


def _fill_partition(tmp: Path, final: Path, recs: pl.DataFrame, run_date: date, fallback: pl.DataFrame | None) -> None:
    recs.write_parquet(tmp / PART_FILE)
    if fallback is not None:
        fallback.select(pl.col(c).cast(t) for c, t in FALLBACK_SCHEMA.items()).write_parquet(tmp / FALLBACK_FILE)
    manifest = run_manifest(recs, run_date, tmp / PART_FILE)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    for child in tmp.iterdir():
        fsync(child)
    if not final.exists():
        tmp.rename(final)
    else:
        # A directory cannot be renamed over a non-empty one; each file swap is atomic instead,
        # the data file last so its manifest never describes an older table.
        if fallback is None:
            (final / FALLBACK_FILE).unlink(missing_ok=True)
        for name in (FALLBACK_FILE, MANIFEST_FILE, PART_FILE):
            if (tmp / name).exists():
                os.replace(tmp / name, final / name)


def kept_dates(data_dir: Path, keep: int) -> list[date]:
    """The run dates retention keeps: the last ``keep`` published ones."""
    dates = published_dates(data_dir)
    return dates[-keep:] if keep > 0 else []


def apply_retention(data_dir: Path, keep: int) -> list[date]:
    """Delete the partitions (and their refreshes) of all but the last ``keep`` run dates;
    returns the dates removed."""
    kept = set(kept_dates(data_dir, keep))
    removed = [d for d in published_dates(data_dir) if d not in kept]
    for day in removed:
        # Refreshes first: retention finds dates by their partition, so none is left orphaned.
        for folder in (refresh_dir(data_dir, day), partition_dir(data_dir, day)):
            if not folder.is_dir():
                continue
            # Renamed out of the listing first, so a reader never sees a half-deleted partition.
            doomed = staging_dir(data_dir) / f"old-{os.getpid()}-{uuid.uuid4().hex[:8]}-{folder.name}"
            folder.rename(doomed)
            shutil.rmtree(doomed)
    return removed


def _create_from(con: duckdb.DuckDBPyConnection, table: str, schema: dict, files: list[str], order: str) -> None:
    columns = ", ".join(f"{name} {_DUCK_TYPES[dtype]}" for name, dtype in schema.items())
    con.execute(f"CREATE TABLE {table} ({columns})")
    if files:
        # By name: partitions written before a column existed (``refreshed_at``) leave it null.
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?, union_by_name = true) ORDER BY {order}",
            [files],
        )


def publish_duckdb(data_dir: Path, db_path: Path, keep: int | None = None) -> Path:
    """Rebuild the DuckDB file from the partitions of the last ``keep`` dates (all when None),
    each with its refreshes applied in order, and swap it in atomically.

    The file holds table ``recommendations`` (all kept dates), view ``recommendations_latest``
    and table ``recommendations_fallback`` (the list for users new to the table).
    """
    days = published_dates(data_dir) if keep is None else kept_dates(data_dir, keep)
    parts = [str(partition_dir(data_dir, d) / PART_FILE) for d in days]
    fallbacks = [str(p) for d in days if (p := partition_dir(data_dir, d) / FALLBACK_FILE).is_file()]
    with staged_file(db_path) as tmp, duckdb.connect(str(tmp)) as con:
        con.execute("BEGIN")
        _create_from(con, TABLE, RECOMMENDATION_SCHEMA, parts, f"{RUN_DATE}, {USER_ID}, {RANK}")
        for day in days:
            for refresh in refresh_files(data_dir, day):
                apply_refresh(con, TABLE, day, refresh)
        _create_from(con, FALLBACK_TABLE, FALLBACK_SCHEMA, fallbacks, f"{RUN_DATE}, {RANK}")
        con.execute(
            f"CREATE VIEW {LATEST_VIEW} AS SELECT * FROM {TABLE} "
            f"WHERE {RUN_DATE} = (SELECT max({RUN_DATE}) FROM {TABLE})"
        )
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    return Path(db_path)


@contextlib.contextmanager
def staged_file(live: Path) -> Iterator[Path]:
    """A temporary path beside ``live`` (the same file system, so the swap is a rename) that
    replaces it when the block succeeds and is removed otherwise. The live file is never opened
    for writing: DuckDB would lock it against readers, and a killed writer could leave it torn.
    Leftovers of writers killed earlier are removed first."""
    live = Path(live)
    live.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{live.name}."
    remove_stale(live.parent, prefix)
    tmp = live.with_name(f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        fsync(tmp)
        _swap_file(tmp, live)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)


def _swap_file(staged: Path, live: Path) -> None:
    """The swap: one rename. Readers that opened the old file keep reading it; new ones get the new."""
    os.replace(staged, live)
    fsync(live.parent)


def postgres_committed(config: NightrecConfig):
    """How ``recover`` asks PostgreSQL whether a killed publish committed there (None: not configured)."""
    url = config.publish.postgres_url
    if url is None:
        return None
    from nightrec.publish.postgres import committed

    return lambda pg, txn: committed(url, txn, pg["schema"], pg["table"])


def publish_all(
    recs: pl.DataFrame, config: NightrecConfig, run_date: date, fallback: pl.DataFrame | None = None
) -> dict:
    """Publish tonight's table to every configured target as one transaction, return a summary.

    Order: the Parquet partition, the DuckDB file (built from the dates retention keeps),
    PostgreSQL (its own transaction, which also applies its retention), and only when all of
    them succeeded, the Parquet retention. If any step fails, the journal puts the partition
    and the DuckDB file back byte for byte; PostgreSQL's transaction never committed. A publish
    killed after PostgreSQL committed is kept by the next one (``journal.recover``).

    The summary holds the run manifest (``rows``, ``users``, ``source_counts``, ``model_version``,
    ``checksum``) and ``targets``; an empty night publishes nothing and says so in ``skipped``.
    """
    recs = conform(recs)
    pub = config.publish
    summary: dict = {"rows": recs.height, "users": recs.get_column(USER_ID).n_unique(), "targets": {}}
    if _nothing(recs, fallback):
        summary["skipped"] = "no recommendations tonight: every target keeps the last published run"
        return summary
    recovered = recover(config.data_dir, postgres_committed(config))
    if recovered:
        summary["recovered"] = recovered
    parquet = pub.parquet or pub.duckdb
    pg = None if pub.postgres_url is None else {"schema": pub.postgres_schema, "table": pub.postgres_table}
    journal = PublishJournal.begin(
        config.data_dir, partition_dir(config.data_dir, run_date), config.duckdb_path if pub.duckdb else None, pg
    )
    try:
        if parquet:
            part = publish_parquet(recs, config.data_dir, run_date, fallback)
            summary["targets"]["parquet"] = str(part)
            summary["manifest"] = json.loads((part / MANIFEST_FILE).read_text())
        if pub.duckdb:
            summary["targets"]["duckdb"] = str(publish_duckdb(config.data_dir, config.duckdb_path, pub.retention_days))
        if pub.postgres_url is not None:
            from nightrec.publish.postgres import publish_postgres

            summary["targets"]["postgres"] = publish_postgres(
                recs,
                pub.postgres_url,
                run_date,
                pub.postgres_schema,
                pub.postgres_table,
                pub.retention_days,
                fallback,
                txn=journal.txn,
            )
        journal.commit()
    except BaseException:
        journal.rollback()
        raise
    if parquet:
        try:
            summary["removed_dates"] = [d.isoformat() for d in apply_retention(config.data_dir, pub.retention_days)]
        except OSError as exc:  # every target serves tonight; the next night retries the deletion
            summary["retention_error"] = f"{type(exc).__name__}: {exc}"
    journal.close()
    return summary
