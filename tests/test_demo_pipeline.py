"""The nightly flow end to end on demo data, on the real Prefect engine and real DuckDB."""

import duckdb
import polars as pl
import pytest

from nightrec.config import load_config
from nightrec.readers import read_events

pytestmark = pytest.mark.integration


def _latest(db_path) -> pl.DataFrame:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.sql("SELECT * FROM recommendations_latest").pl()


def test_nightly_publishes_k_unseen_items_for_every_user(prefect_harness, demo_events, tmp_path):
    from flows.nightly import nightly

    events_dir, manifest = demo_events
    config = load_config(
        overrides={"events": str(events_dir), "data_dir": tmp_path, "k": 10, "train": {"epochs": 2}}, environ={}
    )
    state = nightly(config=config, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["run_date"] == manifest["run_date"]

    table = _latest(config.duckdb_path)
    events = read_events(events_dir)
    assert set(table["user_id"]) == set(events["user_id"])
    per_user = table.group_by("user_id").agg(pl.len(), pl.col("rank").sort(), pl.col("item_id").n_unique())
    assert (per_user["len"] == 10).all()
    assert (per_user["item_id"] == 10).all()
    assert per_user["rank"].to_list()[0] == list(range(1, 11))
    seen = events.select("user_id", "item_id").unique()
    assert table.join(seen, on=["user_id", "item_id"]).is_empty()
    assert set(table["source"]) <= {"model", "model+popularity", "popularity"}
    assert "model" in set(table["source"])  # the trained model serves the users it knows
    assert table["model_version"].null_count() == 0
    assert str(table["run_date"][0]) == manifest["run_date"]
    assert (tmp_path / "recommendations" / f"run_date={manifest['run_date']}" / "part-0.parquet").is_file()

    rerun = nightly(config=config, return_state=True)
    assert rerun.is_completed()
    assert _latest(config.duckdb_path).height == table.height
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM recommendations").fetchone()[0] == table.height


def test_a_night_of_unknown_event_types_fails_and_keeps_the_table(prefect_harness, demo_events, tmp_path):
    from flows.nightly import nightly

    events_dir, _ = demo_events
    good = load_config(
        overrides={"events": str(events_dir), "data_dir": tmp_path, "k": 5, "train": {"epochs": 1}}, environ={}
    )
    assert nightly(config=good, return_state=True).is_completed()
    before = _latest(good.duckdb_path)

    bad_file = tmp_path / "bad.parquet"
    read_events(events_dir).with_columns(pl.lit("hover").alias("event_type")).write_parquet(bad_file)
    bad = good.model_copy(update={"events": str(bad_file), "run_date": None})
    state = nightly(config=bad, return_state=True)
    assert state.is_failed()
    assert "unknown_event_type" in str(state.result(raise_on_failure=False))
    assert _latest(good.duckdb_path).equals(before)
