"""The demo generator: deterministic, realistic in shape, and exact in its injected faults."""

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl

from nightrec.ingest.readers import read_events
from nightrec.ingest.synthetic import (
    BOT_USER,
    UNKNOWN_EVENT_TYPE,
    FaultSpec,
    SyntheticSpec,
    generate_events,
    write_demo_data,
)

SPEC = SyntheticSpec(users=300, items=200, days=4, seed=3, end_date=date(2026, 1, 31))
KEYS = ["user_id", "item_id", "event_type", "timestamp"]


def test_deterministic_by_seed():
    assert generate_events(SPEC).equals(generate_events(SPEC))
    other = SyntheticSpec(users=300, items=200, days=4, seed=4, end_date=date(2026, 1, 31))
    assert not generate_events(SPEC).equals(generate_events(other))


def test_shape_of_a_realistic_log():
    events = generate_events(SPEC)
    start = datetime(2026, 1, 28, tzinfo=UTC)
    assert events["timestamp"].min() >= start
    assert events["timestamp"].max() < start + timedelta(days=4)
    assert events.select(pl.col("timestamp").dt.date().n_unique()).item() == 4
    counts = events["event_type"].value_counts().sort("count", descending=True)["event_type"].to_list()
    assert counts == ["view", "click", "add_to_cart", "purchase"]  # the funnel narrows
    per_item = events.group_by("item_id").len().sort("len", descending=True)["len"]
    top_decile = per_item.head(per_item.len() // 10).sum() / per_item.sum()
    assert top_decile > 0.3  # power-law popularity: 10% of items hold far more than 10% of events
    assert events.filter(pl.col("event_type") == "purchase")["value"].min() > 0
    assert not events.select(KEYS).is_duplicated().any()


def test_sessions_follow_item_transitions():
    views = generate_events(SPEC).filter(pl.col("event_type") == "view").sort("session_id", "timestamp")
    pairs = views.select(
        pl.col("item_id").alias("a"), pl.col("item_id").shift(-1).over("session_id").alias("b")
    ).drop_nulls()
    # each item has 3 successors followed 75% of the time: the top successor dominates a random pick
    top_share = pairs.group_by("a", "b").len().group_by("a").agg(pl.col("len").max() / pl.col("len").sum())
    assert top_share["len"].mean() > 0.3


def test_fault_counts_are_exact(tmp_path):
    faults = FaultSpec(
        null_user_id=7, null_item_id=5, null_event_type=3, null_timestamp=4, unknown_event_type=11,
        future_timestamp=6, duplicate=9, bot_burst=120,
    )  # fmt: skip
    manifest = write_demo_data(tmp_path, SPEC, faults)
    clean_rows = generate_events(SPEC).height
    events = read_events(tmp_path)
    run_start = datetime(2026, 2, 1, tzinfo=UTC)
    assert events.height == manifest["rows"] == clean_rows + faults.duplicate + faults.bot_burst
    assert events["user_id"].null_count() == 7
    assert events["item_id"].null_count() == 5
    assert events["event_type"].null_count() == 3
    assert events["timestamp"].null_count() == 4
    assert (events["event_type"] == UNKNOWN_EVENT_TYPE).sum() == 11
    assert (events["timestamp"] >= run_start).sum() == 6
    assert events.select(KEYS).is_duplicated().sum() == 2 * 9  # each duplicate pairs with its original
    bot = events.filter(pl.col("user_id") == BOT_USER)
    assert bot.height == 120
    assert (bot["timestamp"].max() - bot["timestamp"].min()) < timedelta(minutes=1)
    assert json.loads((tmp_path / "manifest.json").read_text())["faults"]["bot_burst"] == 120
    assert manifest["run_date"] == "2026-02-01"


def test_default_run_date_ignores_future_faults(tmp_path):
    from nightrec.config import load_config
    from nightrec.ingest.runs import default_run_date

    write_demo_data(tmp_path, SPEC, FaultSpec())
    config = load_config(overrides={"events": str(tmp_path)}, environ={})
    # the injected future rows lie days after the run date; "now" is the morning after the last day
    assert default_run_date(config, now=datetime(2026, 2, 1, 6, tzinfo=UTC)) == date(2026, 2, 1)
