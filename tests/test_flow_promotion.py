"""The model registry and the promotion gate, the popularity baseline on the held-out window,
and the guard that keeps a missed night from being replayed."""

import math
import os
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from flows.pipeline import stale_run_reason
from nightrec.config import PopularityConfig
from nightrec.errors import NightrecError
from nightrec.evaluation.gate import quality_degraded, served_popularity_metrics
from nightrec.registry import (
    champion_before,
    content_hash,
    plan_training,
    promotion_decision,
    read_champion,
    retrain_due,
    set_champion,
    write_version_meta,
)


def _version(models, name, run_date, previous=None):
    folder = models / name
    folder.mkdir(parents=True)
    write_version_meta(folder, {"run_date": run_date.isoformat(), "previous_champion": previous})
    return folder


def test_gate_promotes_within_tolerance_and_keeps_the_champion_otherwise():
    assert promotion_decision(0.30, None, 0.0).promote
    assert promotion_decision(0.30, 0.30, 0.0).promote, "not worse is enough"
    assert promotion_decision(0.295, 0.30, 0.01).promote, "a drop inside the tolerance passes"
    kept = promotion_decision(0.28, 0.30, 0.01)
    assert not kept.promote
    assert "0.2800" in kept.reason and "0.3000" in kept.reason and "keeps serving" in kept.reason


def test_champion_pointer_swaps_atomically_and_resolves(tmp_path):
    models = tmp_path / "models"
    first = _version(models, "2026-03-10-scratch-a", date(2026, 3, 10))
    second = _version(models, "2026-03-11-warm-b", date(2026, 3, 11), previous=first.name)
    assert read_champion(models) is None
    set_champion(models, first)
    assert read_champion(models) == first.resolve()
    set_champion(models, second)
    assert read_champion(models) == second.resolve()
    assert os.readlink(models / "champion") == second.name, "relative: the data directory can move"
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(NightrecError):
        set_champion(models, tmp_path)


def test_a_rerun_starts_from_the_champion_before_its_night(tmp_path):
    models = tmp_path / "models"
    first = _version(models, "a", date(2026, 3, 10))
    second = _version(models, "b", date(2026, 3, 11), previous="a")
    set_champion(models, second)
    assert champion_before(models, date(2026, 3, 12)) == second.resolve()
    assert champion_before(models, date(2026, 3, 11)) == first.resolve(), "rerun of night 2 sees night 1's model"
    assert champion_before(models, date(2026, 3, 10)) is None


def test_retraining_is_due_every_n_days(tmp_path):
    champion = _version(tmp_path, "a", date(2026, 3, 10))
    assert retrain_due(None, date(2026, 3, 11), 1)
    assert retrain_due(champion, date(2026, 3, 11), 1)
    assert not retrain_due(champion, date(2026, 3, 11), 3)
    assert retrain_due(champion, date(2026, 3, 13), 3)


def test_content_hash_follows_content_not_timestamps(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"abc")
    before = content_hash(folder)
    (folder / "a.parquet").write_bytes(b"abc")
    (folder / ".partial").write_bytes(b"work in progress is ignored")
    assert content_hash(folder) == before
    (folder / "a.parquet").write_bytes(b"abd")
    assert content_hash(folder) != before
    assert content_hash(tmp_path / "nope") == "missing"


def test_popularity_baseline_ndcg_by_hand(tmp_path):
    # The served list: time-decayed popularity of tonight's events. Same day and type for every
    # event, so scores follow counts: item a x3, b x2, c x2, d x0.
    pl.DataFrame({"item_id": ["a", "b", "c", "d"], "item_idx": [1, 2, 3, 4], "count": [3, 2, 2, 0]}).write_parquet(
        tmp_path / "items.parquet"
    )
    pl.DataFrame({"user_id": ["u0", "u1", "u2"], "user_idx": [0, 1, 2]}).write_parquet(tmp_path / "users.parquet")
    for split in ("valid", "test"):
        pl.DataFrame({"user_idx": [0, 1, 2], "history": [[1], [2], [3]], "target": [1, 3, 4]}).write_parquet(
            tmp_path / f"{split}.parquet"
        )
    training = [("x1", "a"), ("x2", "a"), ("x3", "a"), ("x1", "b"), ("x2", "b"), ("x1", "c"), ("x2", "c")]
    # the held-out answers are in tonight's events too: the baseline must not count them
    held_out = [("u0", "a"), ("u1", "c"), ("u2", "d")] * 5
    day = datetime(2026, 3, 10, 12, tzinfo=UTC)
    events = pl.DataFrame(
        [(u, i, "click", day) for u, i in training + held_out],
        schema=["user_id", "item_id", "event_type", "timestamp"],
        orient="row",
    )
    run = date(2026, 3, 11)
    got = served_popularity_metrics(events, tmp_path, run, PopularityConfig(), ks=(10,))
    # target a: rank 1; target c ties with item b (a tie counts against it): rank 3; target d: rank 4
    expected = (1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(5)) / 3
    assert got["ndcg@10"] == pytest.approx(expected)
    assert got["recall@10"] == 1.0 and got["users"] == 3
    assert served_popularity_metrics(events, tmp_path, run, PopularityConfig(), ks=(2,))["ndcg@2"] == pytest.approx(
        1 / 3
    )


def test_late_scheduled_runs_are_not_replayed():
    now = datetime(2026, 3, 12, 2, 0, tzinfo=UTC)
    assert stale_run_reason(now - timedelta(hours=2), 24, now) is None
    reason = stale_run_reason(now - timedelta(days=2), 24, now)
    assert reason is not None and "not replayed" in reason and "48.0 h" in reason
    assert stale_run_reason(None, 24, now) is None


def test_quality_degraded_when_the_live_model_is_below_popularity_or_data_drifts():
    below = {"candidate": {"valid": {"ndcg@10": 0.10}}, "popularity": {"ndcg@10": 0.20}}
    calm = {"drift": False, "drift_message": "no drift"}
    assert "below the popularity baseline" in quality_degraded(below, {"promoted": True}, calm)
    above = {"champion": {"valid": {"ndcg@10": 0.30}}, "popularity": {"ndcg@10": 0.20}}
    assert quality_degraded(above, {"promoted": False}, calm) is None
    drifted = {"drift": True, "drift_message": "drift: events moved"}
    assert quality_degraded(above, {"promoted": False}, drifted) == "drift: events moved"


def test_the_training_plan_reads_the_champion_once_and_decides(tmp_path):
    models = tmp_path / "models"
    night = date(2026, 3, 11)
    first = plan_training(models, night, every_days=7)
    assert (first.mode, first.base, first.live, first.warm_start) == ("scratch", None, None, None)
    old = _version(models, "2026-03-01-scratch-a", date(2026, 3, 1))
    set_champion(models, old)
    due = plan_training(models, night, every_days=7)
    assert (due.mode, due.warm_start, due.live) == ("warm", old, old) and due.trains
    fresh = plan_training(models, date(2026, 3, 3), every_days=7)
    assert fresh.mode == "reuse" and not fresh.trains and old.name in fresh.note
    forced = plan_training(models, date(2026, 3, 3), every_days=7, retrain_reason="new catalogue")
    assert forced.mode == "scratch" and forced.warm_start is None and "new catalogue" in forced.note


def test_a_dangling_champion_link_does_not_block_the_night(tmp_path):
    models = tmp_path / "models"
    gone = _version(models, "2026-03-10-scratch-a", date(2026, 3, 10))
    set_champion(models, gone)
    gone.rename(tmp_path / "deleted-by-hand")
    assert read_champion(models) is None, "no champion: the night trains from scratch and serves popularity"
    assert champion_before(models, date(2026, 3, 11)) is None
    assert retrain_due(None, date(2026, 3, 11), 1)
