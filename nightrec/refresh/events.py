"""What a refresh reads: the events after the watermark, and the histories of the users they touch."""

from datetime import datetime
from pathlib import Path

import polars as pl

from nightrec.errors import NightrecError
from nightrec.refresh.state import RefreshState
from nightrec.schema import TIMESTAMP, USER_ID

ACCEPTED_FILE = "events.parquet"  # runs/<D>/refresh/<stamp>/: the rows the refresh accepted


def select_new(events: pl.DataFrame, watermark: datetime) -> pl.DataFrame:
    """The rows after the watermark. A row without a readable timestamp cannot be placed in the
    day: it stays in the source, where the next nightly's validation quarantines it."""
    return events.filter(pl.col(TIMESTAMP) > watermark)


def advanced(state: RefreshState, read: pl.DataFrame, latest_allowed: datetime) -> RefreshState:
    """The state after a refresh that read ``read``: the watermark moves to the newest timestamp
    that was not in the future (a clock-skewed row must not hide the real events before it)."""
    newest = read.filter(pl.col(TIMESTAMP) < latest_allowed).get_column(TIMESTAMP).max()
    watermark = max(state.watermark, newest) if newest is not None else state.watermark
    return RefreshState(state.run_date, watermark, state.refreshes + 1)


def accepted_files(refresh_root: Path) -> list[Path]:
    """Every refresh's accepted events of the night, oldest refresh first (folders sort by time)."""
    return sorted(Path(refresh_root).glob(f"*/{ACCEPTED_FILE}"))


def day_events(clean_path: Path, accepted: list[Path]) -> pl.LazyFrame:
    """The night's clean events and every event the day's refreshes accepted, in the event contract."""
    if not Path(clean_path).is_file():
        raise NightrecError(f"{clean_path}: the published night's clean events are gone; run the nightly first")
    return pl.concat([pl.scan_parquet(p) for p in (clean_path, *accepted)], how="vertical")


def touched_events(day: pl.LazyFrame, users: pl.Series) -> pl.DataFrame:
    """Every event of ``users`` in the night's data and the day's refreshes: their whole history."""
    return day.filter(pl.col(USER_ID).is_in(users.implode())).collect()
