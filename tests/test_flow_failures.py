"""Failure semantics: a validation error, a training crash and a publishing failure each end the
run Failed with the cause named, and yesterday's table keeps serving with nothing half-written."""

import shutil
from datetime import timedelta

import polars as pl
import pytest

from flows import training
from nightrec.layout import CHAMPION, models_dir
from nightrec.publish.local import partition_dir
from tests.flow_fixtures import (
    CRASH_TRAINER,
    NIGHT1,
    NIGHT2,
    latest_table,
    run_night,
    small_config,
    task_states,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def served_night(night_copy):
    """A private copy of the shared demo night (night 1, a trained champion) for one test to break."""
    return night_copy, latest_table(night_copy)


def _assert_old_table_serves(config, before):
    assert latest_table(config).equals(before), "readers still see night 1"
    assert not partition_dir(config.data_dir, NIGHT2).exists(), "no partition of the failed night"
    leftovers = [p.name for p in (config.data_dir / "recommendations").iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def test_validation_error_fails_the_run_and_names_the_rule(served_night, tmp_path):
    config, before = served_night
    bad = tmp_path / "bad-night" / "events.parquet"
    bad.parent.mkdir()
    good = pl.read_parquet(config.run_dir(NIGHT1) / "events.parquet").select(
        "user_id", "item_id", "event_type", "timestamp"
    )
    good.with_columns(pl.lit(None, pl.String).alias("user_id")).write_parquet(bad)
    state = run_night(config.model_copy(update={"events": str(bad)}), NIGHT2)
    assert state.is_failed()
    assert "user_id" in state.message, state.message
    states = task_states(state)
    assert states["validate"] == "Failed"
    assert "publish" not in states and "train" not in states
    _assert_old_table_serves(config, before)


def test_training_crash_degrades_the_night_to_the_champion(served_night, night2_events, monkeypatch):
    config, _ = served_night
    monkeypatch.setattr(training, "TRAINER", CRASH_TRAINER)  # the flow runs in this process
    models = models_dir(config.data_dir)
    champion = (models / CHAMPION).resolve()
    state = run_night(config.model_copy(update={"events": str(night2_events)}), NIGHT2)
    assert state.is_completed() and state.name == "Degraded", state
    assert "model not refreshed" in state.message and "exit code 3" in state.message, state.message
    assert task_states(state)["train"] == "Failed"
    assert task_states(state)["publish"] == "Completed"
    assert sorted(p.name for p in models.iterdir()) == sorted([CHAMPION, champion.name]), (
        "no new model folder, finished or partial"
    )
    assert (models / CHAMPION).resolve() == champion, "night 1's champion keeps serving"
    served = latest_table(config)
    assert served["run_date"].unique().to_list() == [NIGHT2], "tonight's table is published"
    assert champion.name in served["model_version"].unique().to_list(), "scored by the champion"
    summary = state.result()
    assert summary["model_not_refreshed"] in summary["degraded"] and "nightrec.quality.degraded" in summary["degraded"]


def test_training_crash_on_a_first_night_serves_popularity(night_copy, monkeypatch):
    """Night 1 again, in a copy of the shared night with no model yet: the trainer crashes."""
    monkeypatch.setattr(training, "TRAINER", CRASH_TRAINER)
    shutil.rmtree(models_dir(night_copy.data_dir))
    state = run_night(night_copy, NIGHT1)
    assert state.is_completed() and state.name == "Degraded", state
    served = latest_table(night_copy)
    assert served.height > 0 and served["source"].unique().to_list() == ["popularity"]
    assert not (models_dir(night_copy.data_dir) / CHAMPION).exists()


def test_publish_failure_rolls_back_and_the_old_table_serves(served_night, night2_events):
    config, before = served_night
    # a damaged partition of another date breaks the rebuild of the DuckDB file mid-publish,
    # after tonight's Parquet partition was swapped in
    damaged = partition_dir(config.data_dir, NIGHT1 - timedelta(days=30))
    damaged.mkdir(parents=True)
    (damaged / "part-0.parquet").write_bytes(b"not parquet")
    state = run_night(config.model_copy(update={"events": str(night2_events)}), NIGHT2)
    assert state.is_failed()
    assert "part-0.parquet" in state.message or "parquet" in state.message.lower(), state.message
    assert task_states(state)["publish"] == "Failed"
    _assert_old_table_serves(config, before)


def test_unreachable_postgres_with_retention_one_keeps_every_night_and_the_champion(served_night, night2_events):
    import socket

    from pydantic import SecretStr

    config, before = served_night
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    publish = config.publish.model_copy(
        update={"retention_days": 1, "postgres_url": SecretStr(f"postgresql://u:p@127.0.0.1:{port}/db")}
    )
    champion = (models_dir(config.data_dir) / CHAMPION).resolve()
    parts = sorted(p.name for p in (config.data_dir / "recommendations").iterdir())
    state = run_night(config.model_copy(update={"events": str(night2_events), "publish": publish}), NIGHT2)
    assert state.is_failed() and "does not answer" in state.message, state.message
    assert task_states(state)["train"] == "Completed", "a new model was trained and passed the gate"
    assert (models_dir(config.data_dir) / CHAMPION).resolve() == champion, "promotion waits for a successful publish"
    assert sorted(p.name for p in (config.data_dir / "recommendations").iterdir()) == parts
    _assert_old_table_serves(config, before)


def test_a_one_item_catalogue_degrades_to_popularity_instead_of_failing(prefect_harness, tmp_path):
    from datetime import UTC, date, datetime

    from nightrec.schema import EVENT_SCHEMA

    rows = [
        {
            "user_id": f"u{u}",
            "item_id": "only",
            "event_type": "view",
            "timestamp": datetime(2026, 3, 4 + d, 10, u, tzinfo=UTC),
        }
        for u in range(30)
        for d in range(3)
    ]
    events = tmp_path / "events.parquet"
    pl.DataFrame(rows, schema_overrides={"timestamp": EVENT_SCHEMA["timestamp"]}).write_parquet(events)
    config = small_config(tmp_path / "data", events)
    state = run_night(config, date(2026, 3, 7))
    assert state.is_completed() and state.name == "Degraded", state.message
    assert "empty training set" in state.message, state.message
    from nightrec.publish.served import read_fallback

    assert read_fallback(config.duckdb_path)["item_id"].to_list() == ["only"], "new users get popularity"
