"""User behaviour metrics on an event log, in Polars: funnel, sessions, activity, long tail, transitions.

``analyze_events`` returns one JSON-ready dict holding every number the report shows (and the
histogram bins its figures draw). Sessions come from ``session_id`` where the events carry one,
else from an inactivity gap per user; the logic is kept here, independent of training sequences.
"""

from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl

from nightrec.behavior.items import SESSION, browse_step, long_tail_metrics, repeat_metrics, transition_metrics
from nightrec.behavior.trends import drift_metrics
from nightrec.config import NightrecConfig
from nightrec.errors import InputError
from nightrec.ingest.readers import read_events
from nightrec.schema import EVENT_TYPE, ITEM_ID, REQUIRED_COLUMNS, SESSION_ID, TIMESTAMP, USER_ID

DAY = "__day"


def load_events(events: Path | str | pl.DataFrame | pl.LazyFrame, fmt: str = "auto") -> pl.DataFrame:
    """Events as a DataFrame: a path is read with ``nightrec.ingest.readers.read_events`` in format ``fmt``."""
    if isinstance(events, pl.LazyFrame):
        return events.collect()
    if isinstance(events, pl.DataFrame):
        return events
    return read_events(events, fmt)


def prepare_events(events: pl.DataFrame, timeout_minutes: float) -> tuple[pl.DataFrame, dict]:
    """Keep the contract's columns, drop rows without a key value, and number sessions.

    Returns the frame (ids as categoricals) sorted by session and time, with ``__session`` numbering
    the sessions 1..n in that order and a date ``__day`` column, and a note of how sessions were
    found and how many rows were dropped.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise InputError(
            f"events: missing required column '{missing[0]}' (expected {', '.join(REQUIRED_COLUMNS)}; "
            f"found {', '.join(events.columns) or 'no columns'})"
        )
    if events.height == 0:
        raise InputError("events: no rows to analyse (the input is empty)")
    if not isinstance(events.schema[TIMESTAMP], pl.Datetime):
        raise InputError(f"events: column '{TIMESTAMP}' must be a datetime, got {events.schema[TIMESTAMP]}")

    # Ids become categoricals, each column over its own private dictionary (a shared one serialises
    # the parallel casts; the process-wide one would keep every id forever): every later group-by
    # then hashes integer codes instead of strings.
    def cat() -> pl.Categorical:
        return pl.Categorical(pl.Categories.random())

    sid = pl.col(SESSION_ID) if SESSION_ID in events.columns else pl.lit(None, pl.String)
    df = events.select(
        pl.col(USER_ID).cast(pl.String).cast(cat()),
        pl.col(ITEM_ID).cast(pl.String).cast(cat()),
        pl.col(EVENT_TYPE).cast(pl.String).cast(cat()),
        TIMESTAMP,
        sid.cast(pl.String).cast(cat()).alias(SESSION_ID),
    ).drop_nulls(REQUIRED_COLUMNS)
    dropped = events.height - df.height
    if df.height == 0:
        raise InputError(f"events: all {events.height} rows lack a {', '.join(REQUIRED_COLUMNS)} value")

    user = pl.col(USER_ID).to_physical().cast(pl.UInt64)
    # A (user, session_id) pair is one session: both codes fit in 32 bits, so one integer names it.
    with_sid = df.filter(pl.col(SESSION_ID).is_not_null()).with_columns(
        (user * (1 << 32) + pl.col(SESSION_ID).to_physical().cast(pl.UInt64)).alias(SESSION)
    )
    # Without a session id, a user's session ends after ``timeout_minutes`` of silence; these ids
    # count from 2**63, above every (user, session_id) key.
    gap = timedelta(minutes=timeout_minutes)
    without = df.filter(pl.col(SESSION_ID).is_null()).sort(USER_ID, TIMESTAMP)
    new_session = (pl.col(USER_ID) != pl.col(USER_ID).shift()) | ((pl.col(TIMESTAMP) - pl.col(TIMESTAMP).shift()) > gap)
    without = without.with_columns(
        (new_session.fill_null(True).cum_sum().cast(pl.UInt64) + pl.lit(1 << 63, pl.UInt64)).alias(SESSION)
    )
    # One sort puts each session's events together in time order (a stable sort on the session key
    # alone when the log is already in time order, which is cheaper); sessions are then renumbered
    # 1..n in that order, so group-bys on the session take Polars' sorted fast path.
    df = pl.concat([with_sid, without]).select(USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP, SESSION)
    in_time_order = without.height == 0 and df[TIMESTAMP].is_sorted()
    df = (df.sort(SESSION, maintain_order=True) if in_time_order else df.sort(SESSION, TIMESTAMP)).with_columns(
        (pl.col(SESSION) != pl.col(SESSION).shift())
        .fill_null(True)
        .cum_sum()
        .cast(pl.UInt32)
        .set_sorted()
        .alias(SESSION),
        pl.col(TIMESTAMP).dt.date().alias(DAY),
    )
    source = "session_id" if without.height == 0 else "timeout" if with_sid.height == 0 else "mixed"
    note = {
        "rows_in": events.height,
        "rows_dropped_missing_key": dropped,
        "session_source": source,
        "session_timeout_minutes": timeout_minutes,
        "rows_with_session_id": with_sid.height,
    }
    return df, note


def distribution(values: np.ndarray, unit: str, integer: bool = False) -> dict:
    """Summary statistics and histogram bins; log-spaced bins where the data is heavy-tailed."""
    values = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = (float(np.percentile(values, q)) for q in (50, 90, 99))
    positive = values[values > 0]
    heavy = positive.size > 0 and float(positive.max()) > 20 * max(float(np.median(positive)), 1e-9)
    if heavy:
        lo, hi = float(positive.min()), float(positive.max())
        edges = np.geomspace(lo, hi * 1.0001, num=31) if hi > lo else np.array([lo, lo + 1])
        if integer:  # whole-number edges, so no log bin falls between two integers and stays empty
            edges = np.unique(np.round(np.geomspace(lo, hi + 1, num=31))) - 0.5
        counts, edges = np.histogram(positive, bins=edges)
    elif integer and values.max() - values.min() <= 60:
        edges = np.arange(values.min() - 0.5, values.max() + 1.5)
        counts, edges = np.histogram(values, bins=edges)
    else:
        counts, edges = np.histogram(values, bins=30)
    return {
        "unit": unit,
        "count": int(values.size),
        "mean": float(values.mean()),
        "median": p50,
        "p90": p90,
        "p99": p99,
        "max": float(values.max()),
        "zeros": int((values == 0).sum()),
        "log_scale": bool(heavy),
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
    }


def _rate(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def funnel_metrics(df: pl.DataFrame, steps: list[str]) -> dict:
    """Events and users per funnel step, conversion between consecutive present steps, overall and per day.

    A step with no events is named in ``absent`` and skipped, so nothing is divided by zero; with fewer
    than two present steps there is no conversion and ``message`` says why.
    """
    by_type = df.group_by(EVENT_TYPE).agg(pl.len().alias("events"), pl.col(USER_ID).n_unique().alias("users"))
    known = {row[EVENT_TYPE]: row for row in by_type.iter_rows(named=True)}
    rows = [
        {"step": s, "events": known.get(s, {}).get("events", 0), "users": known.get(s, {}).get("users", 0)}
        for s in steps
    ]
    present = [r["step"] for r in rows if r["events"] > 0]
    absent = [r["step"] for r in rows if r["events"] == 0]
    counts = {r["step"]: r for r in rows}
    conversions = [
        {
            "from": a,
            "to": b,
            "rate": _rate(counts[b]["events"], counts[a]["events"]),
            "user_rate": _rate(counts[b]["users"], counts[a]["users"]),
        }
        for a, b in pairwise(present)
    ]
    overall = _rate(counts[present[-1]]["events"], counts[present[0]]["events"]) if len(present) >= 2 else None
    messages = []
    if absent:
        messages.append(f"absent funnel steps: {', '.join(absent)} (no events of these types)")
    if len(present) < 2:
        messages.append(f"no conversion: the funnel needs two present steps, found {len(present)}")

    daily = (
        df.filter(pl.col(EVENT_TYPE).is_in(present))
        .group_by(DAY, EVENT_TYPE)
        .len()
        .pivot(on=EVENT_TYPE, index=DAY, values="len")
        .sort(DAY)
    )
    per_day = []
    for row in daily.iter_rows(named=True):
        day_counts = {s: row.get(s) or 0 for s in present}
        per_day.append(
            {
                "day": row[DAY].isoformat(),
                "events": day_counts,
                "conversions": {f"{a}->{b}": _rate(day_counts[b], day_counts[a]) for a, b in pairwise(present)},
                "overall": _rate(day_counts[present[-1]], day_counts[present[0]]) if len(present) >= 2 else None,
            }
        )
    others = sorted(set(known) - set(steps))
    return {
        "steps": rows,
        "present": present,
        "absent": absent,
        "conversions": conversions,
        "overall_conversion": overall,
        "other_event_types": {t: known[t]["events"] for t in others},
        "message": "; ".join(messages) or None,
        "per_day": per_day,
    }


def session_metrics(df: pl.DataFrame) -> dict:
    """Sessions per user, events and distinct items per session, session length in minutes."""
    sessions = df.group_by(SESSION).agg(
        pl.col(USER_ID).first(),
        pl.len().alias("events"),
        pl.col(ITEM_ID).n_unique().alias("items"),
        ((pl.col(TIMESTAMP).max() - pl.col(TIMESTAMP).min()).dt.total_milliseconds() / 60_000).alias("minutes"),
    )
    per_user = sessions.group_by(USER_ID).len()
    return {
        "sessions": sessions.height,
        "single_event_sessions": int((sessions["events"] == 1).sum()),
        "sessions_per_user": distribution(per_user["len"].to_numpy(), "sessions", integer=True),
        "events_per_session": distribution(sessions["events"].to_numpy(), "events", integer=True),
        "items_per_session": distribution(sessions["items"].to_numpy(), "items", integer=True),
        "length_minutes": distribution(sessions["minutes"].to_numpy(), "minutes"),
    }


def activity_metrics(df: pl.DataFrame, churn_days: int) -> tuple[dict, pl.DataFrame]:
    """Daily/weekly active users, new vs returning per day, and churn candidates (with their frame)."""
    users = df.group_by(USER_ID).agg(
        pl.col(DAY).min().alias("first_day"), pl.col(TIMESTAMP).max().alias("last_seen"), pl.len().alias("events")
    )
    new_per_day = users.group_by("first_day").len().rename({"first_day": DAY, "len": "new_users"})
    daily = (
        df.group_by(DAY)
        .agg(pl.col(USER_ID).n_unique().alias("active_users"), pl.len().alias("events"))
        .join(new_per_day, on=DAY, how="left")
        .with_columns(pl.col("new_users").fill_null(0))
        .with_columns((pl.col("active_users") - pl.col("new_users")).alias("returning_users"))
        .sort(DAY)
    )
    first_day, last_day = daily[DAY].min(), daily[DAY].max()
    weekly = (
        df.group_by(pl.col(DAY).dt.truncate("1w").alias("week"))
        .agg(pl.col(USER_ID).n_unique().alias("active_users"), pl.len().alias("events"))
        .sort("week")
    )
    reference = df[TIMESTAMP].max()
    churn = (
        users.with_columns(((reference - pl.col("last_seen")).dt.total_seconds() / 86_400).alias("days_inactive"))
        .filter(pl.col("days_inactive") > churn_days)
        .sort("days_inactive", descending=True)
        .select(pl.col(USER_ID).cast(pl.String), "last_seen", "days_inactive", "events")
    )
    span_days = (reference - df[TIMESTAMP].min()).total_seconds() / 86_400
    note = None
    if span_days <= churn_days:
        note = (
            f"the data spans {span_days:.1f} days, not more than the {churn_days}-day inactivity window: no churn yet"
        )
    metrics = {
        "days": daily.height,
        "first_day": first_day.isoformat(),
        "last_day": last_day.isoformat(),
        "daily": [{**row, "day": row["day"].isoformat()} for row in daily.rename({DAY: "day"}).iter_rows(named=True)],
        "weekly": [
            {
                "week": row["week"].isoformat(),
                "active_users": row["active_users"],
                "events": row["events"],
                "partial": row["week"] < first_day or row["week"] + timedelta(days=6) > last_day,
            }
            for row in weekly.iter_rows(named=True)
        ],
        "mean_daily_active_users": float(daily["active_users"].mean()),
        "events_per_user": distribution(users["events"].to_numpy(), "events", integer=True),
        "churn": {
            "inactive_days": churn_days,
            "reference": reference.isoformat(),
            "candidates": churn.height,
            "share": churn.height / users.height,
            "note": note,
        },
    }
    return metrics, churn


def analyze_events(events: pl.DataFrame, config: NightrecConfig | None = None) -> tuple[dict, pl.DataFrame]:
    """Every behaviour metric for ``events``; returns the metrics dict and the churn-candidate frame."""
    config = config or NightrecConfig()
    bc = config.behavior
    timeout = bc.session_timeout_minutes or config.sequences.session_timeout_minutes
    df, note = prepare_events(events, timeout)
    steps = list(bc.funnel_steps or config.event_types)
    funnel = funnel_metrics(df, steps)
    activity, churn = activity_metrics(df, bc.churn_inactive_days)
    step = browse_step(funnel)
    overview = {
        **note,
        "events": df.height,
        "users": df[USER_ID].n_unique(),
        "items": df[ITEM_ID].n_unique(),
        "first_event": df[TIMESTAMP].min().isoformat(),
        "last_event": df[TIMESTAMP].max().isoformat(),
    }
    metrics = {
        "overview": overview,
        "funnel": funnel,
        "sessions": session_metrics(df),
        "activity": activity,
        "long_tail": long_tail_metrics(df),
        "transitions": transition_metrics(df, step, bc.top_transitions),
        "repeat": repeat_metrics(df, step),
    }
    item_days = df.group_by(DAY, ITEM_ID).len()
    metrics["drift"] = drift_metrics(activity["daily"], funnel["per_day"], item_days.rename({DAY: "day"}), bc)
    return metrics, churn
