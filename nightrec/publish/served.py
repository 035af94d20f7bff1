"""Reading the served table back from the DuckDB file, read-only (the CLI and demos)."""

from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from nightrec.errors import NightrecError
from nightrec.publish.local import FALLBACK_TABLE, LATEST_VIEW, TABLE
from nightrec.schema import RANK, RUN_DATE, USER_ID


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
    """The list published for users new to the table (latest run unless ``run_date``); a night
    with only that list (no user had anything left to be recommended) still has one."""
    with _read_only(db_path) as con:
        when = "?" if run_date else f"(SELECT max({RUN_DATE}) FROM {FALLBACK_TABLE})"
        query = f"SELECT * FROM {FALLBACK_TABLE} WHERE {RUN_DATE} = {when} ORDER BY {RANK}"
        return con.sql(query, params=[run_date] if run_date else None).pl()


def _read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    db_path = Path(db_path)
    if not db_path.is_file():
        raise NightrecError(f"{db_path}: no published recommendations yet (run `nightrec run` first)")
    try:
        return duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NightrecError(f"{db_path}: cannot be opened as a DuckDB file ({first})") from None


def sample_users(db_path: Path, n: int) -> list[str]:
    """The first ``n`` user ids of the latest run, for demos."""
    with _read_only(db_path) as con:
        rows = con.execute(f"SELECT DISTINCT {USER_ID} FROM {LATEST_VIEW} ORDER BY {USER_ID} LIMIT ?", [n]).fetchall()
    return [r[0] for r in rows]


def similar_users(db_path: Path, user_id: str, run_date: date | None = None, n: int = 3) -> list[str]:
    """Up to ``n`` published ids within two edits of ``user_id`` (closest first): a likely typo."""
    source = f"(SELECT {USER_ID} FROM {TABLE} WHERE {RUN_DATE} = ?)" if run_date else LATEST_VIEW
    query = (
        f"SELECT DISTINCT {USER_ID}, damerau_levenshtein({USER_ID}, ?) AS d FROM {source} "
        f"WHERE abs(length({USER_ID}) - length(?)) <= 2 AND d <= 2 ORDER BY d, {USER_ID} LIMIT ?"
    )
    params = [user_id, *([run_date] if run_date else []), user_id, n]
    with _read_only(db_path) as con:
        return [row[0] for row in con.execute(query, params).fetchall()]
