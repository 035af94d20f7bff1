"""A realistic synthetic event log, deterministic by seed, with optional faults of known counts.

Users browse in sessions (exponential dwell gaps between views); items follow a power-law
popularity; within a session the next item is usually one of the current item's few successors
(a Markov structure a sequence model can learn), and mostly shares its category; each user leans
towards a few categories. Some views become clicks, carts and purchases. New items appear only in
the last days' sessions; the item table (``synthetic_items``) also lists items with no events yet.
"""

import json
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from nightrec.ingest.synthetic_items import Catalogue, build_catalogue, generate_items, item_id
from nightrec.ingest.synthetic_spec import FaultSpec, SyntheticSpec
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
ITEMS_FILE = "items.parquet"


def _pick(rng: np.random.Generator, catalogue: Catalogue, category: np.ndarray, lean: np.ndarray) -> np.ndarray:
    """One item per row: from ``category`` where ``lean``, else from the whole catalogue by popularity."""
    picks = catalogue.sampler.anywhere(rng, category.size)
    picks[lean] = catalogue.sampler.within(rng, category[lean])
    return picks


def _session_items(
    rng: np.random.Generator, spec: SyntheticSpec, catalogue: Catalogue, session_category: np.ndarray, lengths
) -> np.ndarray:
    """Item index per (session, position), -1 past each session's end; one step per position."""
    successor_weights = np.array([0.6, 0.25, 0.15][: spec.successors])
    successor_weights = successor_weights / successor_weights.sum()
    items = np.full((lengths.size, lengths.max()), -1, dtype=np.int64)
    lean = rng.random(lengths.size) < spec.category_preference
    items[:, 0] = _pick(rng, catalogue, session_category, lean)
    for pos in range(1, lengths.max()):
        active = np.flatnonzero(lengths > pos)
        prev = items[active, pos - 1]
        follow = rng.random(active.size) < spec.follow_probability
        which = rng.choice(spec.successors, size=active.size, p=successor_weights)
        lean = rng.random(active.size) < spec.category_preference
        random_next = _pick(rng, catalogue, session_category[active], lean)
        items[active, pos] = np.where(follow, catalogue.successors[prev, which], random_next)
    return items


def _session_categories(rng: np.random.Generator, spec: SyntheticSpec, catalogue: Catalogue, session_user):
    """Each session's category: one of its user's few preferred ones. Users prefer categories by their
    popularity, so items keep their power-law share of views; repeats let a user lean on fewer."""
    share = catalogue.sampler.category_share
    preferred = rng.choice(share.size, size=(spec.users, spec.preferred_categories), p=share)
    return preferred[session_user, rng.integers(0, spec.preferred_categories, size=session_user.size)]


def _before_launch(spec: SyntheticSpec, catalogue: Catalogue, items: np.ndarray, session_start: np.ndarray):
    """Sessions that start before the new items' launch show an older item of the same category instead."""
    launch_ms = max(spec.days - spec.new_item_days, 0) * 86_400_000
    return np.where((items >= 0) & (session_start < launch_ms)[:, None], catalogue.stand_in[items], items)


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

    catalogue = build_catalogue(spec)
    session_category = _session_categories(rng, spec, catalogue, session_user)
    items = _before_launch(
        spec, catalogue, _session_items(rng, spec, catalogue, session_category, lengths), session_start
    )
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
        item_id(pl.col("i")).alias(ITEM_ID),
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


def _items_path(out: Path, items_out: str | Path | None) -> Path:
    items_out = out.parent / ITEMS_FILE if items_out is None else Path(items_out)
    # the event reader takes every Parquet file of the events folder for events
    if items_out.resolve().parent == out.resolve():
        raise ValueError(f"the item table {items_out} must not be written inside the events folder {out}")
    return items_out


def write_demo_data(
    out: str | Path, spec: SyntheticSpec, faults: FaultSpec | None = None, items_out: str | Path | None = None
) -> dict:
    """Write one Parquet file per day under ``out``, a ``manifest.json`` with the fault counts, and the
    item table at ``items_out`` (default ``items.parquet`` beside ``out``)."""
    out = Path(out)
    items_out = _items_path(out, items_out)
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
    items_out.parent.mkdir(parents=True, exist_ok=True)
    generate_items(spec).write_parquet(items_out)
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
        "items_file": str(items_out.resolve()),
        "new_items": spec.new_item_count,
        "catalogue_only_items": spec.catalogue_only_count,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
