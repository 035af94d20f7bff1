"""The nightly flow on the real Prefect engine: a completed night with its artifacts, and a
rerun of the same night that reuses every finished stage and leaves the table as it was."""

from datetime import timedelta
from pathlib import Path

import pytest

from lightning_modules.evaluate import model_valid_metrics
from nightrec.registry import read_json
from tests.conftest import DEMO_END
from tests.flow_fixtures import (
    NIGHT2,
    flow_run_artifacts,
    latest_table,
    run_night,
    task_states,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_night_completes_trains_publishes_and_a_rerun_reuses_cached_stages(demo_night):
    config, first = demo_night
    run_date = DEMO_END + timedelta(days=1)

    summary = first.result()
    assert summary["run_date"] == run_date.isoformat()
    table = latest_table(config)
    assert table["run_date"].unique().to_list() == [run_date]
    assert table["user_id"].n_unique() == summary["recommendations"]["users"] == 200
    # the UI shows the report, the metrics table and the link to the published table
    artifacts = flow_run_artifacts(first)
    assert artifacts["nightly-report"] == "markdown"
    assert artifacts["nightly-metrics"] == "table"
    assert artifacts["nightly-behavior"] == "markdown"
    assert artifacts["nightly-published"] == "markdown"  # link artifacts are stored as markdown links
    assert "progress" in artifacts.values()

    champion = config.data_dir / "models" / "champion"
    assert champion.is_symlink(), "the first trained model becomes the champion"
    version = champion.resolve()
    for name in ("model.ckpt", "metrics.json", "config.json", "items.parquet", "version.json"):
        assert (version / name).is_file(), name
    assert summary["promotion"]["promoted"] is True
    trained_ndcg = summary["metrics"]["candidate"]["valid"]["ndcg@10"]
    assert trained_ndcg > 0
    # the gate's own evaluation of a model folder reproduces the trainer's validation NDCG@10
    seq_dir = config.run_dir(run_date) / "sequences"
    assert model_valid_metrics(version, seq_dir)["ndcg@10"] == pytest.approx(trained_ndcg, abs=1e-6)
    assert set(table["source"].unique()) <= {"model", "model+popularity", "popularity"}
    assert "model" in set(table["source"].unique()), "the trained model serves the users it knows"
    assert not list((config.data_dir / "models").glob(".partial-*")), "no half-written model folder"

    second = run_night(config)
    assert second.is_completed(), second.message
    states = task_states(second)
    for stage in ("ingest", "validate", "behavior", "sequences", "train", "fallback"):
        assert states[stage] == "Cached", (stage, states)
    assert states["publish"] == "Completed"
    assert summary["stages"]["train"].startswith("scratch start")
    assert second.result()["stages"]["train"].startswith("reused from cache: "), "no training happened on the rerun"
    assert latest_table(config).equals(table), "the rerun left the published table unchanged"
    assert latest_table(config, "recommendations").height == table.height, "a rerun replaces its night's rows"
    assert champion.resolve() == version
    assert [p.name for p in (config.data_dir / "models").iterdir() if p.name != "champion"] == [version.name]


def test_second_night_warm_starts_from_the_champion_and_is_judged_against_it(
    night_copy,
    night2_events,
):
    config = night_copy
    version = (config.data_dir / "models" / "champion").resolve()
    champion = config.data_dir / "models" / "champion"
    night2 = run_night(config.model_copy(update={"events": str(night2_events)}))
    assert night2.is_completed(), night2.message
    result = night2.result()
    assert result["run_date"] == NIGHT2.isoformat()
    candidate = config.data_dir / "models" / Path(result["trained"]).name
    meta = read_json(candidate / "version.json")
    assert meta["mode"] == "warm" and meta["warm_start_from"] == str(version)
    assert meta["data_snapshot_id"] and meta["code_version"]
    decision = meta["promotion"]
    assert decision["champion_ndcg"] == pytest.approx(result["metrics"]["champion"]["valid"]["ndcg@10"])
    assert decision["promote"] == (decision["candidate_ndcg"] >= decision["champion_ndcg"] - decision["tolerance"])
    assert champion.resolve() == (candidate if decision["promote"] else version)
    assert result["promotion"]["reason"] == decision["reason"]


def test_a_night_that_switches_family_trains_it_from_scratch_and_the_gate_judges_it_against_the_champion(
    night_copy,
    night2_events,
):
    from lightning_modules.model_io import load_model

    config = night_copy
    champion = (config.data_dir / "models" / "champion").resolve()
    # the default (auto over item_cf and lstm) served one of them; tonight trains the other alone
    served = load_model(champion)[0].family
    assert served in ("item_cf", "lstm")
    other = "lstm" if served == "item_cf" else "item_cf"
    switched = config.model_copy(update={"events": str(night2_events)})
    switched.model.family = other
    night2 = run_night(switched)
    assert night2.is_completed(), night2.message
    result = night2.result()
    candidate = config.data_dir / "models" / Path(result["trained"]).name
    assert load_model(candidate)[0].family == other
    metrics = read_json(candidate / "metrics.json")
    assert metrics["warm_start"] is None  # nothing to warm from a model of another family
    assert (metrics["stopped_by"] == "closed_form") == (other == "item_cf")
    meta = read_json(candidate / "version.json")
    decision, tonight = meta["promotion"], Path(meta["sequences"])
    # the champion is judged on tonight's window by the same evaluator as the challenger
    assert decision["champion_ndcg"] == pytest.approx(model_valid_metrics(champion, tonight)["ndcg@10"])
    assert decision["candidate_ndcg"] == pytest.approx(metrics["valid"]["ndcg@10"])
    serving = candidate if decision["promote"] else champion
    assert (config.data_dir / "models" / "champion").resolve() == serving
    table = latest_table(config)
    assert set(table.filter(table["source"].str.starts_with("model"))["model_version"].unique()) == {serving.name}


def test_a_night_with_family_auto_serves_the_best_candidate_and_reports_every_one(night_copy, night2_events):
    from flows.report import build_report
    from lightning_modules.model_io import load_model
    from nightrec.evaluation.table import metric_table

    auto = night_copy.model_copy(update={"events": str(night2_events)})
    auto.model.family, auto.model.candidates = "auto", ["lstm", "item_cf"]
    night2 = run_night(auto)
    assert night2.is_completed(), night2.message
    result = night2.result()
    candidate = Path(result["trained"])
    chosen = read_json(candidate / "metrics.json")
    selection = chosen["selection"]
    assert chosen["family"] == max(selection, key=lambda f: selection[f]["valid"]["ndcg@10"])
    assert load_model(candidate)[0].family == chosen["family"]
    rows = {(r["model"], r["split"]) for r in metric_table(result["metrics"])}
    winner, loser = chosen["family"], next(f for f in selection if f != chosen["family"])
    assert {(f"candidate {winner} (selected)", "valid"), (f"candidate {loser}", "valid")} <= rows
    assert {("champion", "valid"), ("popularity", "valid"), ("last-item knn", "valid")} <= rows
    assert f"Family: {winner} (model.family=auto" in build_report(result)
