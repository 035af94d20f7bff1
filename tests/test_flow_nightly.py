"""The nightly flow on the real Prefect engine: a completed night with its artifacts, and a
rerun of the same night that reuses every finished stage and leaves the table as it was."""

from datetime import timedelta

import pytest

from tests.conftest import DEMO_END
from tests.flow_fixtures import flow_run_artifacts, latest_table, run_night, small_config, task_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_night_completes_trains_publishes_and_a_rerun_reuses_cached_stages(prefect_harness, demo_events, tmp_path):
    events, _ = demo_events
    config = small_config(tmp_path / "data", events)
    run_date = DEMO_END + timedelta(days=1)

    first = run_night(config)
    assert first.is_completed(), first.message
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
    assert summary["metrics"]["candidate"]["valid"]["ndcg@10"] > 0
    assert not list((config.data_dir / "models").glob(".partial-*")), "no half-written model folder"

    second = run_night(config)
    assert second.is_completed(), second.message
    states = task_states(second)
    for stage in ("ingest", "validate", "behavior", "sequences", "train", "fallback"):
        assert states[stage] == "Cached", (stage, states)
    assert states["publish"] == "Completed"
    assert latest_table(config).equals(table), "the rerun left the published table unchanged"
    assert champion.resolve() == version
    assert [p.name for p in (config.data_dir / "models").iterdir() if p.name != "champion"] == [version.name]
