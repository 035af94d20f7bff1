"""The demo generator: deterministic, realistic in shape, and exact in its injected faults."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nightrec.config import MetadataConfig
from nightrec.ingest.readers import read_events
from nightrec.ingest.synthetic import (
    BOT_USER,
    UNKNOWN_EVENT_TYPE,
    FaultSpec,
    SyntheticSpec,
    generate_events,
    write_demo_data,
)
from nightrec.ingest.synthetic_items import CATEGORY_WORDS, build_catalogue, generate_items
from nightrec.metadata.tables import CATEGORICAL, LIST, read_item_table

SPEC = SyntheticSpec(users=300, items=200, days=4, seed=3, end_date=date(2026, 1, 31))
KEYS = ["user_id", "item_id", "event_type", "timestamp"]


def test_deterministic_by_seed():
    assert generate_events(SPEC).equals(generate_events(SPEC))
    other = SyntheticSpec(users=300, items=200, days=4, seed=4, end_date=date(2026, 1, 31))
    assert not generate_events(SPEC).equals(generate_events(other))
    assert generate_items(SPEC).equals(generate_items(SPEC))
    assert not generate_items(SPEC).equals(generate_items(other))


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
    manifest = write_demo_data(tmp_path / "events", SPEC, faults)
    clean_rows = generate_events(SPEC).height
    events = read_events(tmp_path / "events")
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
    assert json.loads((tmp_path / "events" / "manifest.json").read_text())["faults"]["bot_burst"] == 120
    assert manifest["run_date"] == "2026-02-01"


def test_default_run_date_ignores_future_faults(tmp_path):
    from nightrec.config import load_config
    from nightrec.ingest.runs import default_run_date

    write_demo_data(tmp_path / "events", SPEC, FaultSpec())
    config = load_config(overrides={"events": str(tmp_path / "events")}, environ={})
    # the injected future rows lie days after the run date; "now" is the morning after the last day
    assert default_run_date(config, now=datetime(2026, 2, 1, 6, tzinfo=UTC)) == date(2026, 2, 1)


def _views_with_category(events: pl.DataFrame) -> pl.DataFrame:
    categories = generate_items(SPEC).select("item_id", "category")
    views = events.filter(pl.col("event_type") == "view").sort("session_id", "timestamp")
    return views.join(categories, on="item_id", how="left", maintain_order="left")


def test_the_item_table_covers_every_item_with_events_and_the_catalogue_only_ones():
    events, items = generate_events(SPEC), generate_items(SPEC)
    assert items.columns == ["item_id", "category", "brand", "title"]
    assert items.height == SPEC.items + 2 and items["item_id"].is_unique().all()
    assert items.null_count().sum_horizontal().item() == 0
    assert set(events["item_id"]) <= set(items["item_id"])
    never_seen = set(items["item_id"]) - set(events["item_id"])
    assert {"i00200", "i00201"} <= never_seen  # the catalogue-only items follow the 200 with events
    assert items["category"].n_unique() == 16
    assert items.group_by("category").agg(pl.col("brand").n_unique())["brand"].min() > 1
    # a title: the brand's word, then words mostly from its category's vocabulary
    assert (items["title"].list.first() == items["brand"].str.to_lowercase()).all()
    words = items.select("category", pl.col("title").list.slice(1)).explode("title")
    own = [w in CATEGORY_WORDS[c] for c, w in words.iter_rows()]
    assert np.mean(own) > 0.8


def test_successive_items_in_a_session_share_a_category_far_above_chance():
    views = _views_with_category(generate_events(SPEC))
    pairs = views.select(
        pl.col("category").alias("a"), pl.col("category").shift(-1).over("session_id").alias("b")
    ).drop_nulls()
    same = (pairs["a"] == pairs["b"]).mean()
    chance = (views["category"].value_counts(normalize=True)["proportion"] ** 2).sum()
    assert same >= 3 * chance


def test_users_lean_towards_a_few_categories():
    views = _views_with_category(generate_events(SPEC))
    sessions = views.group_by("session_id").agg(pl.col("user_id").first(), pl.col("category").first())

    def pairs(counts: pl.Series) -> float:
        return (counts * (counts - 1) / 2).sum()

    # two sessions of one user start in the same category far more often than two sessions at random
    same_user = pairs(sessions.group_by("user_id", "category").len()["len"]) / pairs(
        sessions.group_by("user_id").len()["len"]
    )
    chance = (sessions["category"].value_counts(normalize=True)["proportion"] ** 2).sum()
    assert same_user >= 2 * chance


def test_new_items_have_events_only_in_the_last_days():
    new = np.flatnonzero(build_catalogue(SPEC).new)
    new_ids = [f"i{i:05d}" for i in new]
    assert len(new_ids) == SPEC.new_item_count == 6
    launch = datetime(2026, 1, 30, tzinfo=UTC)  # the last 2 of the days ending 2026-01-31
    events = generate_events(SPEC)
    launched = events.filter(pl.col("item_id").is_in(new_ids))
    assert launched["timestamp"].min() >= launch
    assert launched["item_id"].n_unique() >= 4  # most were seen once launched
    assert events.filter(pl.col("timestamp") < launch).height > events.height / 3


def test_the_item_table_reads_with_the_attribute_reader_without_settings(tmp_path):
    write_demo_data(tmp_path / "events", SPEC)
    table = read_item_table(MetadataConfig(items_file=tmp_path / "items.parquet"))
    assert table.quarantine.height == 0 and table.frame.height == SPEC.items + 2
    assert table.kinds == {"category": CATEGORICAL, "brand": CATEGORICAL, "title": LIST}


def test_the_item_table_is_written_beside_the_events_and_named_in_the_manifest(tmp_path):
    events_dir = tmp_path / "events"
    manifest = write_demo_data(events_dir, SPEC)
    assert (tmp_path / "items.parquet").is_file()
    assert all(p.name.startswith("events-") for p in events_dir.glob("*.parquet"))
    assert read_events(events_dir).height == generate_events(SPEC).height  # no item rows read as events
    assert Path(manifest["items_file"]) == (tmp_path / "items.parquet").resolve()
    assert manifest["new_items"] == 6 and manifest["catalogue_only_items"] == 2
    assert json.loads((events_dir / "manifest.json").read_text())["items_file"] == manifest["items_file"]

    elsewhere = tmp_path / "meta" / "catalogue.parquet"
    assert write_demo_data(events_dir, SPEC, items_out=elsewhere)["items_file"] == str(elsewhere.resolve())
    assert pl.read_parquet(elsewhere).equals(generate_items(SPEC))
    with pytest.raises(ValueError, match="inside the events folder"):
        write_demo_data(events_dir, SPEC, items_out=events_dir / "items.parquet")
