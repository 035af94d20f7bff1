"""Publishing the nightly table: a Parquet partition per run date and an embedded DuckDB file.

Both swaps are atomic for readers. The DuckDB file is rebuilt beside the live one from the
Parquet partitions and renamed over it: DuckDB locks a file it has open for writing against
every other process, so the live file is only ever opened read-only.
"""

import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from nightrec.errors import NightrecError
from nightrec.schema import RANK, RECOMMENDATION_SCHEMA, RUN_DATE, USER_ID

TABLE = "recommendations"
LATEST_VIEW = "recommendations_latest"
PART_FILE = "part-0.parquet"


def partition_dir(data_dir: Path, run_date: date) -> Path:
    return Path(data_dir) / TABLE / f"run_date={run_date.isoformat()}"


def conform(recs: pl.DataFrame) -> pl.DataFrame:
    """Cast to the published schema and column order; raises if a column is missing."""
    missing = [c for c in RECOMMENDATION_SCHEMA if c not in recs.columns]
    if missing:
        raise NightrecError(f"recommendations: missing column(s) {', '.join(missing)}")
    return recs.select(pl.col(c).cast(t) for c, t in RECOMMENDATION_SCHEMA.items()).sort(USER_ID, RANK)


def publish_parquet(recs: pl.DataFrame, data_dir: Path, run_date: date) -> Path:
    """Write ``recommendations/run_date=YYYY-MM-DD/`` via a temporary folder and renames.

    A rerun of the same date replaces that partition; it never appends to it.
    """
    final = partition_dir(data_dir, run_date)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    recs = conform(recs)
    recs.write_parquet(tmp / PART_FILE)
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old)
    return final


def publish_duckdb(data_dir: Path, db_path: Path) -> Path:
    """Rebuild the DuckDB file from every published partition and swap it in atomically.

    The file holds table ``recommendations`` (all kept dates) and view ``recommendations_latest``.
    """
    db_path = Path(db_path)
    pattern = str(Path(data_dir) / TABLE / "run_date=*" / PART_FILE)
    tmp = db_path.with_name(f".{db_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with duckdb.connect(str(tmp)) as con:
            con.execute(
                f"CREATE TABLE {TABLE} AS SELECT * FROM read_parquet(?, hive_partitioning = false) "
                f"ORDER BY {RUN_DATE}, {USER_ID}, {RANK}",
                [pattern],
            )
            con.execute(
                f"CREATE VIEW {LATEST_VIEW} AS SELECT * FROM {TABLE} "
                f"WHERE {RUN_DATE} = (SELECT max({RUN_DATE}) FROM {TABLE})"
            )
            con.execute("CHECKPOINT")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, db_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return db_path


def read_user_recommendations(db_path: Path, user_id: str, run_date: date | None = None) -> pl.DataFrame:
    """One user's list from the DuckDB file (latest run unless ``run_date`` is given), read-only."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise NightrecError(f"{db_path}: no published recommendations yet (run `nightrec run` first)")
    with duckdb.connect(str(db_path), read_only=True) as con:
        if run_date is None:
            query, params = f"SELECT * FROM {LATEST_VIEW} WHERE {USER_ID} = ? ORDER BY {RANK}", [user_id]
        else:
            query = f"SELECT * FROM {TABLE} WHERE {USER_ID} = ? AND {RUN_DATE} = ? ORDER BY {RANK}"
            params = [user_id, run_date]
        return con.sql(query, params=params).pl()


def sample_users(db_path: Path, n: int) -> list[str]:
    """The first ``n`` user ids of the latest run, for demos."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute(f"SELECT DISTINCT {USER_ID} FROM {LATEST_VIEW} ORDER BY {USER_ID} LIMIT ?", [n]).fetchall()
    return [r[0] for r in rows]
