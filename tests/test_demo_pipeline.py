"""The nightly flow end to end on demo data, on the real Prefect engine and real DuckDB."""

import duckdb
import polars as pl
import pytest

from nightrec.ingest.readers import read_events

pytestmark = pytest.mark.integration


def _latest(db_path) -> pl.DataFrame:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.sql("SELECT * FROM recommendations_latest").pl()


def test_a_night_of_unknown_event_types_fails_and_keeps_the_table(night_copy, demo_events, tmp_path):
    from flows.nightly import nightly

    events_dir, _ = demo_events
    good = night_copy
    before = _latest(good.duckdb_path)

    bad_file = tmp_path / "bad.parquet"
    read_events(events_dir).with_columns(pl.lit("hover").alias("event_type")).write_parquet(bad_file)
    bad = good.model_copy(update={"events": str(bad_file), "run_date": None})
    state = nightly(config=bad, return_state=True)
    assert state.is_failed()
    assert "unknown_event_type" in str(state.result(raise_on_failure=False))
    assert _latest(good.duckdb_path).equals(before)
