"""Publishing the nightly table: a Parquet partition per run date, an embedded DuckDB file and,
optionally, PostgreSQL (``nightrec.publish.postgres``).

Every swap is atomic for readers and idempotent per run date. A partition's files are written
in a temporary folder and renamed into place (a new date renames the folder, a rerun replaces
each file with ``os.replace``). The DuckDB file is rebuilt beside the live one from the kept
partitions and renamed over it: DuckDB locks a file it has open for writing against every other
process, so the live file is only ever opened read-only and a killed writer leaves it untouched.
"""

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from nightrec.config import NightrecConfig
from nightrec.errors import NightrecError
from nightrec.layout import FALLBACK_FILE
from nightrec.schema import (
    FALLBACK_SCHEMA,
    MODEL_VERSION,
    RANK,
    RECOMMENDATION_SCHEMA,
    RUN_DATE,
    SOURCE,
    SOURCE_POPULARITY,
    USER_ID,
    conform,
)

TABLE = "recommendations"
LATEST_VIEW = "recommendations_latest"
FALLBACK_TABLE = "recommendations_fallback"
PART_FILE = "part-0.parquet"
MANIFEST_FILE = "_manifest.json"
PARTITION_PREFIX = "run_date="
_DUCK_TYPES = {pl.Date: "DATE", pl.String: "VARCHAR", pl.Int32: "INTEGER", pl.Float64: "DOUBLE"}


def partition_dir(data_dir: Path, run_date: date) -> Path:
    return Path(data_dir) / TABLE / f"{PARTITION_PREFIX}{run_date.isoformat()}"


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
    model = [v for v in versions if v and not v.startswith(f"{SOURCE_POPULARITY}@")]
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(folder: Path, prefix: str) -> None:
    """Delete leftovers (``<prefix><pid>-...``) of writers that were killed mid-publish."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if not child.name.startswith(prefix):
            continue
        pid = child.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)


def publish_parquet(
    recs: pl.DataFrame, data_dir: Path, run_date: date, fallback: pl.DataFrame | None = None
) -> Path | None:
    """Write ``recommendations/run_date=YYYY-MM-DD/`` (``part-0.parquet``, the new-user
    ``fallback.parquet`` and ``_manifest.json``) via a temporary folder and renames.

    A rerun of the same date replaces that partition; it never appends to it. An empty night
    publishes nothing (returns None), so the table keeps the last good run.
    """
    recs = conform(recs)
    if recs.is_empty():
        return None
    final = partition_dir(data_dir, run_date)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final.parent, ".tmp-")
    _remove_stale(final.parent, ".old-")
    tmp = final.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}"
    tmp.mkdir()
    recs.write_parquet(tmp / PART_FILE)
    if fallback is not None:
        fallback.select(pl.col(c).cast(t) for c, t in FALLBACK_SCHEMA.items()).write_parquet(tmp / FALLBACK_FILE)
    manifest = run_manifest(recs, run_date, tmp / PART_FILE)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    for child in tmp.iterdir():
        _fsync(child)
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
        tmp.rmdir()
    _fsync(final.parent)
    return final


def apply_retention(data_dir: Path, keep: int) -> list[date]:
    """Delete the partitions of all but the last ``keep`` run dates; returns the dates removed."""
    dates = published_dates(data_dir)
    removed = dates[:-keep] if keep > 0 else dates
    for day in removed:
        folder = partition_dir(data_dir, day)
        # Rename first so a reader listing partitions never sees a half-deleted one.
        doomed = folder.parent / f".old-{os.getpid()}-{uuid.uuid4().hex[:8]}-{folder.name}"
        folder.rename(doomed)
        shutil.rmtree(doomed)
    return removed


def _create_from(con: duckdb.DuckDBPyConnection, table: str, schema: dict, files: list[str], order: str) -> None:
    if files:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?) ORDER BY {order}", [files])
    else:
        columns = ", ".join(f"{name} {_DUCK_TYPES[dtype]}" for name, dtype in schema.items())
        con.execute(f"CREATE TABLE {table} ({columns})")


def publish_duckdb(data_dir: Path, db_path: Path) -> Path:
    """Rebuild the DuckDB file from every kept partition and swap it in atomically.

    The file holds table ``recommendations`` (all kept dates), view ``recommendations_latest``
    and table ``recommendations_fallback`` (the list for users new to the table).
    """
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{db_path.name}."
    _remove_stale(db_path.parent, prefix)
    tmp = db_path.with_name(f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    days = published_dates(data_dir)
    parts = [str(partition_dir(data_dir, d) / PART_FILE) for d in days]
    fallbacks = [str(p) for d in days if (p := partition_dir(data_dir, d) / FALLBACK_FILE).is_file()]
    try:
        with duckdb.connect(str(tmp)) as con:
            con.execute("BEGIN")
            _create_from(con, TABLE, RECOMMENDATION_SCHEMA, parts, f"{RUN_DATE}, {USER_ID}, {RANK}")
            _create_from(con, FALLBACK_TABLE, FALLBACK_SCHEMA, fallbacks, f"{RUN_DATE}, {RANK}")
            con.execute(
                f"CREATE VIEW {LATEST_VIEW} AS SELECT * FROM {TABLE} "
                f"WHERE {RUN_DATE} = (SELECT max({RUN_DATE}) FROM {TABLE})"
            )
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        _fsync(tmp)
        _swap_file(tmp, db_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return db_path


def _swap_file(staged: Path, live: Path) -> None:
    """The swap: one rename. Readers that opened the old file keep reading it; new ones get the new."""
    os.replace(staged, live)
    _fsync(live.parent)


def publish_all(
    recs: pl.DataFrame, config: NightrecConfig, run_date: date, fallback: pl.DataFrame | None = None
) -> dict:
    """Publish tonight's table to every configured target, apply retention, return a summary.

    The summary holds the run manifest (``rows``, ``users``, ``source_counts``, ``model_version``,
    ``checksum``) and ``targets``; an empty night publishes nothing and says so in ``skipped``.
    """
    recs = conform(recs)
    pub = config.publish
    summary: dict = {"rows": recs.height, "users": recs.get_column(USER_ID).n_unique(), "targets": {}}
    if recs.is_empty():
        summary["skipped"] = "no recommendations tonight: every target keeps the last published run"
        return summary
    if pub.parquet or pub.duckdb:
        part = publish_parquet(recs, config.data_dir, run_date, fallback)
        summary["targets"]["parquet"] = str(part)
        summary["manifest"] = json.loads((part / MANIFEST_FILE).read_text())
        summary["removed_dates"] = [d.isoformat() for d in apply_retention(config.data_dir, pub.retention_days)]
    if pub.duckdb:
        summary["targets"]["duckdb"] = str(publish_duckdb(config.data_dir, config.duckdb_path))
    if pub.postgres_url is not None:
        from nightrec.publish.postgres import publish_postgres

        where = publish_postgres(
            recs, pub.postgres_url, run_date, pub.postgres_schema, pub.postgres_table, pub.retention_days, fallback
        )
        summary["targets"]["postgres"] = where
    return summary


def read_user_recommendations(db_path: Path, user_id: str, run_date: date | None = None) -> pl.DataFrame:
    """One user's list from the DuckDB file (latest run unless ``run_date`` is given), read-only."""
    with _read_only(db_path) as con:
        if run_date is None:
            query, params = f"SELECT * FROM {LATEST_VIEW} WHERE {USER_ID} = ? ORDER BY {RANK}", [user_id]
        else:
            query = f"SELECT * FROM {TABLE} WHERE {USER_ID} = ? AND {RUN_DATE} = ? ORDER BY {RANK}"
            params = [user_id, run_date]
        return con.sql(query, params=params).pl()


def read_fallback(db_path: Path, run_date: date | None = None) -> pl.DataFrame:
    """The list published for users new to the table (latest run unless ``run_date``)."""
    with _read_only(db_path) as con:
        when = "?" if run_date else f"(SELECT max({RUN_DATE}) FROM {TABLE})"
        query = f"SELECT * FROM {FALLBACK_TABLE} WHERE {RUN_DATE} = {when} ORDER BY {RANK}"
        return con.sql(query, params=[run_date] if run_date else None).pl()


def _read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    db_path = Path(db_path)
    if not db_path.is_file():
        raise NightrecError(f"{db_path}: no published recommendations yet (run `nightrec run` first)")
    return duckdb.connect(str(db_path), read_only=True)


def sample_users(db_path: Path, n: int) -> list[str]:
    """The first ``n`` user ids of the latest run, for demos."""
    with _read_only(db_path) as con:
        rows = con.execute(f"SELECT DISTINCT {USER_ID} FROM {LATEST_VIEW} ORDER BY {USER_ID} LIMIT ?", [n]).fetchall()
    return [r[0] for r in rows]
