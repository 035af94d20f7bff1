"""Where a run date's refresh lists live, and how one is laid over the DuckDB table.

A refresh (``nightrec.publish.refresh``) stores the complete new lists of the users it re-scored
in ``recommendations_refresh/run_date=<date>/refresh-<UTC time>.parquet``: beside the nightly
partitions, not among them, so a reader globbing ``recommendations/*/`` still sees one night per
date and its files stay byte-identical to the nightly's. The served table is the nightly
partition with that date's refresh files applied in name order, which is time order. The refresh
publish and the nightly rebuild both apply them here, so the two never disagree.
"""

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from nightrec.schema import RANK, RUN_DATE, USER_ID

REFRESH_TABLE = "recommendations_refresh"
REFRESH_PREFIX = "refresh-"
# Fixed width and most significant first: names sort as the times do.
_STAMP = "%Y%m%dT%H%M%S.%fZ"


def refresh_dir(data_dir: Path, run_date: date) -> Path:
    return Path(data_dir) / REFRESH_TABLE / f"{RUN_DATE}={run_date.isoformat()}"


def refresh_file_name(refreshed_at: datetime) -> str:
    return f"{REFRESH_PREFIX}{refreshed_at.astimezone(UTC).strftime(_STAMP)}.parquet"


def refresh_files(data_dir: Path, run_date: date) -> list[Path]:
    """The run date's refresh files, oldest first."""
    folder = refresh_dir(data_dir, run_date)
    return sorted(folder.glob(f"{REFRESH_PREFIX}*.parquet")) if folder.is_dir() else []


def apply_refresh(con: duckdb.DuckDBPyConnection, table: str, run_date: date, file: Path) -> None:
    """Replace the lists of the file's users for ``run_date`` by the file's rows.

    Whole lists are swapped per user, so a user is served one run's list, never a mix. Call it
    inside the caller's transaction.
    """
    con.execute(
        f"DELETE FROM {table} WHERE {RUN_DATE} = ? AND {USER_ID} IN (SELECT {USER_ID} FROM read_parquet(?))",
        [run_date, str(file)],
    )
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?) ORDER BY {USER_ID}, {RANK}", [str(file)])
