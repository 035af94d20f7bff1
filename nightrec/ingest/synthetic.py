"""A realistic synthetic event log, deterministic by seed, with optional faults of known counts.

Users browse in sessions (exponential dwell gaps between views); items follow a power-law
popularity; within a session the next item is usually one of the current item's few successors
(a Markov structure a sequence model can learn); some views become clicks, carts and purchases.
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from nightrec.schema import (
    ADD_TO_CART,
    CLICK,
    EVENT_SCHEMA,
    EVENT_TYPE,
    ITEM_ID,
    PURCHASE,
    SESSION_ID,
    TIMESTAMP,
    USER_ID,
    VALUE,
    VIEW,
)

UNKNOWN_EVENT_TYPE = "hover"
BOT_USER = "bot-0001"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FaultSpec:
    """How many rows of each fault to inject; every count is exact in the output."""

    null_user_id: int = 25
    null_item_id: int = 25
    null_event_type: int = 25
    null_timestamp: int = 25
    unknown_event_type: int = 40
    future_timestamp: int = 30
    duplicate: int = 50
    bot_burst: int = 300


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 1000
    items: int = 500
    days: int = 7
    seed: int = 0
    end_date: date = field(default_factory=lambda: datetime.now(UTC).date() - timedelta(days=1))
    zipf_exponent: float = 1.1
    successors: int = 3
    follow_probability: float = 0.75
    mean_session_length: float = 5.0
    mean_dwell_seconds: float = 45.0
    click_rate: float = 0.3
    cart_rate: float = 0.25
    purchase_rate: float = 0.4


def _popularity(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _session_items(rng: np.random.Generator, spec: SyntheticSpec, lengths: np.ndarray) -> np.ndarray:
    """Item index per (session, position), -1 past each session's end; one step per position."""
    popularity = _popularity(rng, spec.items, spec.zipf_exponent)
    successors = rng.choice(spec.items, size=(spec.items, spec.successors), p=popularity)
    successor_weights = np.array([0.6, 0.25, 0.15][: spec.successors])
    successor_weights = successor_weights / successor_weights.sum()
    items = np.full((lengths.size, lengths.max()), -1, dtype=np.int64)
    items[:, 0] = rng.choice(spec.items, size=lengths.size, p=popularity)
    for pos in range(1, lengths.max()):
        active = np.flatnonzero(lengths > pos)
        prev = items[active, pos - 1]
        follow = rng.random(active.size) < spec.follow_probability
        which = rng.choice(spec.successors, size=active.size, p=successor_weights)
        random_next = rng.choice(spec.items, size=active.size, p=popularity)
        items[active, pos] = np.where(follow, successors[prev, which], random_next)
    return items


def generate_events(spec: SyntheticSpec) -> pl.DataFrame:
    """Clean events in the contract, sorted by time, with no exact duplicates."""
    rng = np.random.default_rng(spec.seed)
    activity = rng.lognormal(mean=0.0, sigma=0.8, size=spec.users)
    sessions_per_user = 1 + rng.poisson(activity * spec.days * 0.35)
    session_user = np.repeat(np.arange(spec.users), sessions_per_user)
    n_sessions = session_user.size
    lengths = np.minimum(rng.geometric(1.0 / spec.mean_session_length, size=n_sessions), 40)
    start_day = datetime.combine(spec.end_date - timedelta(days=spec.days - 1), datetime.min.time(), tzinfo=UTC)
    session_start = rng.integers(0, spec.days * 86_400 - 3_600, size=n_sessions) * 1000

    items = _session_items(rng, spec, lengths)
    gaps = (5.0 + rng.exponential(spec.mean_dwell_seconds, size=items.shape)) * 1000
    offsets = np.cumsum(gaps, axis=1) - gaps[:, :1]
    sess_idx, pos = np.nonzero(items >= 0)
    view_ms = session_start[sess_idx] + offsets[sess_idx, pos].astype(np.int64)
    item = items[sess_idx, pos]

    clicked = rng.random(item.size) < spec.click_rate
    carted = clicked & (rng.random(item.size) < spec.cart_rate)
    bought = carted & (rng.random(item.size) < spec.purchase_rate)
    kinds = [
        (VIEW, np.ones_like(clicked), 0),
        (CLICK, clicked, 1000),
        (ADD_TO_CART, carted, 2000),
        (PURCHASE, bought, 3000),
    ]
    parts = []
    for name, mask, delay in kinds:
        parts.append(
            pl.DataFrame(
                {
                    "u": session_user[sess_idx[mask]],
                    "s": sess_idx[mask],
                    "i": item[mask],
                    EVENT_TYPE: np.full(mask.sum(), name),
                    "ms": view_ms[mask] + delay,
                    VALUE: np.where(name == PURCHASE, rng.gamma(2.0, 15.0, size=mask.sum()).round(2), np.nan),
                }
            )
        )
    base = int(start_day.timestamp() * 1000)
    events = pl.concat(parts).select(
        pl.format("u{}", pl.col("u").cast(pl.String).str.zfill(6)).alias(USER_ID),
        pl.format("i{}", pl.col("i").cast(pl.String).str.zfill(5)).alias(ITEM_ID),
        pl.col(EVENT_TYPE),
        pl.from_epoch(pl.col("ms") + base, time_unit="ms")
        .dt.replace_time_zone("UTC")
        .cast(EVENT_SCHEMA[TIMESTAMP])
        .alias(TIMESTAMP),
        pl.format("u{}-s{}", pl.col("u"), pl.col("s")).alias(SESSION_ID),
        pl.col(VALUE).fill_nan(None),
    )
    return events.unique(subset=[USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP], keep="first", maintain_order=True).sort(
        TIMESTAMP, USER_ID, maintain_order=True
    )


def inject_faults(events: pl.DataFrame, faults: FaultSpec, run_date: date, seed: int) -> pl.DataFrame:
    """Corrupt disjoint sets of rows, append duplicates and a bot burst; counts are exactly ``faults``."""
    rng = np.random.default_rng(seed + 1)
    counts = asdict(faults)
    in_place = ["null_user_id", "null_item_id", "null_event_type", "null_timestamp", "unknown_event_type"]
    in_place += ["future_timestamp", "duplicate"]
    needed = sum(counts[name] for name in in_place)
    if needed > events.height:
        raise ValueError(f"cannot inject {needed} faults into {events.height} events")
    chosen = rng.choice(events.height, size=needed, replace=False)
    groups, start = {}, 0
    for name in in_place:
        groups[name] = chosen[start : start + counts[name]]
        start += counts[name]

    idx = pl.int_range(pl.len())
    run_start = datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)
    future = [
        run_start + timedelta(days=int(d), seconds=int(s))
        for d, s in zip(
            rng.integers(1, 6, size=faults.future_timestamp),
            rng.integers(0, 86_400, size=faults.future_timestamp),
            strict=True,
        )
    ]
    future_ts = pl.Series(future, dtype=EVENT_SCHEMA[TIMESTAMP])
    corrupted = events.with_columns(
        pl.when(idx.is_in(groups["null_user_id"])).then(None).otherwise(pl.col(USER_ID)).alias(USER_ID),
        pl.when(idx.is_in(groups["null_item_id"])).then(None).otherwise(pl.col(ITEM_ID)).alias(ITEM_ID),
        pl.when(idx.is_in(groups["null_event_type"]))
        .then(None)
        .when(idx.is_in(groups["unknown_event_type"]))
        .then(pl.lit(UNKNOWN_EVENT_TYPE))
        .otherwise(pl.col(EVENT_TYPE))
        .alias(EVENT_TYPE),
        pl.when(idx.is_in(groups["null_timestamp"])).then(None).otherwise(pl.col(TIMESTAMP)).alias(TIMESTAMP),
    )
    future_rows = np.sort(groups["future_timestamp"])
    timestamps = corrupted.get_column(TIMESTAMP).scatter(future_rows, future_ts)
    corrupted = corrupted.with_columns(timestamps)
    duplicates = events[np.sort(groups["duplicate"]).tolist()]

    last_day = run_start - timedelta(days=1)
    burst_start = last_day + timedelta(hours=3)
    bot = pl.DataFrame(
        {
            USER_ID: [BOT_USER] * faults.bot_burst,
            ITEM_ID: [f"i{int(i):05d}" for i in rng.integers(0, 10_000, size=faults.bot_burst)],
            EVENT_TYPE: [VIEW] * faults.bot_burst,
            TIMESTAMP: [burst_start + timedelta(milliseconds=100 * k) for k in range(faults.bot_burst)],
            SESSION_ID: [f"{BOT_USER}-s0"] * faults.bot_burst,
            VALUE: [None] * faults.bot_burst,
        },
        schema=EVENT_SCHEMA,
    )
    return pl.concat([corrupted, duplicates, bot])


def write_demo_data(out: str | Path, spec: SyntheticSpec, faults: FaultSpec | None = None) -> dict:
    """Write one Parquet file per day under ``out`` and a ``manifest.json`` with the fault counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("events-*.parquet"):
        old.unlink()
    run_date = spec.end_date + timedelta(days=1)
    events = generate_events(spec)
    if faults is not None:
        events = inject_faults(events, faults, run_date, spec.seed)
    # Rows without a usable day (null or future timestamps) land in the last day's file.
    day = pl.col(TIMESTAMP).dt.date()
    file_day = pl.when(day.is_null() | (day > spec.end_date)).then(pl.lit(spec.end_date)).otherwise(day)
    events = events.with_columns(file_day.alias("__day"))
    for (day_value,), part in events.partition_by("__day", as_dict=True, maintain_order=True).items():
        part.drop("__day").write_parquet(out / f"events-{day_value.isoformat()}.parquet")
    manifest = {
        "rows": events.height,
        "users": spec.users,
        "items": spec.items,
        "days": spec.days,
        "seed": spec.seed,
        "first_date": (spec.end_date - timedelta(days=spec.days - 1)).isoformat(),
        "end_date": spec.end_date.isoformat(),
        "run_date": run_date.isoformat(),
        "faults": asdict(faults) if faults is not None else {},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
