"""Night-level measures: tonight's partition, volume against the trailing median, sparsity.

These judge the night as a whole and never quarantine a row: a new user or a rare item is
valid data, and sequence building decides what to train on.
"""

import json
import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from expectations.rules import night_window
from nightrec.config import NightrecConfig
from nightrec.layout import VALIDATION_FILE, runs_dir
from nightrec.schema import EVENT_SCHEMA, ITEM_ID, TIMESTAMP, USER_ID

EVENTS = "events"


@dataclass(frozen=True)
class NightStats:
    """Tonight's measures and the small frames GX judges them on."""

    night: pl.DataFrame  # one row: night_rows, trailing_median, volume_ratio, density
    users: pl.DataFrame  # tonight's users with their clean events in all the input
    items: pl.DataFrame  # tonight's items, likewise
    info: dict


def previous_volumes(data_dir: Path, run_date: date, nights: int) -> list[tuple[str, int]]:
    """``(date, night_rows)`` of the last ``nights`` runs before ``run_date`` that recorded a volume."""
    found = []
    for report in sorted(runs_dir(data_dir).glob(f"*/{VALIDATION_FILE}")):
        try:
            night = date.fromisoformat(report.parent.name)
            rows = json.loads(report.read_text()).get("night_rows")
        except (ValueError, OSError):
            continue
        if night < run_date and isinstance(rows, int):
            found.append((night.isoformat(), rows))
    return found[-nights:]


def _daily_volumes(events: pl.DataFrame, run_date: date, nights: int) -> list[tuple[str, int]]:
    """Earlier days' row counts inside the input itself, from its first day on (empty days count)."""
    start, _ = night_window(run_date)
    days = events.filter(pl.col(TIMESTAMP) < start).group_by(pl.col(TIMESTAMP).dt.date().alias("day")).len()
    if days.is_empty():
        return []
    counts = dict(days.iter_rows())
    first = max(min(counts), start.date() - timedelta(days=nights))
    span = (start.date() - first).days
    return [
        ((first + timedelta(days=d)).isoformat(), int(counts.get(first + timedelta(days=d), 0))) for d in range(span)
    ]


def _per_key(clean: pl.DataFrame, key: str, tonight: pl.Expr) -> pl.LazyFrame:
    """Every key's events in all the clean input, and whether it was seen tonight."""
    return clean.lazy().group_by(key).agg(pl.len().cast(pl.Int64).alias(EVENTS), tonight.any().alias("__tonight"))


def _tonight(counts: pl.DataFrame, key: str) -> pl.DataFrame:
    return counts.filter(pl.col("__tonight")).select(key, EVENTS).sort(key)


def night_stats(events: pl.DataFrame, clean: pl.DataFrame, config: NightrecConfig, run_date: date) -> NightStats:
    """Measure tonight from all loaded ``events`` (volume) and the ``clean`` rows (sparsity)."""
    v = config.validation
    start, end = night_window(run_date)
    in_night = (pl.col(TIMESTAMP) >= start) & (pl.col(TIMESTAMP) < end)
    night_rows = int(events.select(in_night.sum()).item() or 0)

    history = previous_volumes(config.data_dir, run_date, v.volume_nights)
    history_source = "runs"
    if len(history) < v.volume_min_history:
        history, history_source = _daily_volumes(events, run_date, v.volume_nights), "input"
    median = statistics.median(n for _, n in history) if len(history) >= v.volume_min_history else None
    ratio = None if median is None else (night_rows / median if median else float("inf"))

    # One pass each, run together: these group-bys are the cost of the night checks.
    user_counts, item_counts = pl.collect_all([_per_key(clean, USER_ID, in_night), _per_key(clean, ITEM_ID, in_night)])
    users, items = _tonight(user_counts, USER_ID), _tonight(item_counts, ITEM_ID)
    n_users, n_items = user_counts.height, item_counts.height
    density = clean.height / (n_users * n_items) if clean.height else None
    night = pl.DataFrame(
        {"night_rows": [night_rows], "trailing_median": [median], "volume_ratio": [ratio], "density": [density]},
        schema={
            "night_rows": pl.Int64,
            "trailing_median": pl.Float64,
            "volume_ratio": pl.Float64,
            "density": pl.Float64,
        },
    )
    rows = max(events.height, 1)
    info = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "night_rows": night_rows,
        "night_users": users.height,
        "night_items": items.height,
        "trailing_median": median,
        "volume_ratio": ratio,
        "volume_history": {"source": history_source if median is not None else "none", "nights": dict(history)},
        "density": density,
        "clean_users": n_users,
        "clean_items": n_items,
        "missing_rate": {c: events.get_column(c).null_count() / rows for c in EVENT_SCHEMA},
    }
    return NightStats(night=night, users=users, items=items, info=info)
