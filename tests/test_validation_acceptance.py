"""Acceptance: the demo's injected faults, the CLI's exit codes, and a bad night in the real flow."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from expectations.load import ingest
from expectations.rules import REASONS
from expectations.runner import QUARANTINE_FILE, validate_file
from nightrec.config import NightrecConfig
from nightrec.ingest.synthetic import FaultSpec, SyntheticSpec, write_demo_data
from nightrec.layout import EVENTS_FILE
from nightrec.schema import USER_ID
from tests.conftest import DEMO_END

ROOT = Path(__file__).resolve().parents[1]
# The demo generator's fault names, as the quarantine's reasons.
FAULT_TO_RULE = {"bot_burst": "bot_user"}


def thirty_percent_null_users(source: Path, out: Path) -> Path:
    events = pl.read_parquet(sorted(source.glob("*.parquet")))
    events = events.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 < 3).then(None).otherwise(pl.col(USER_ID)).alias(USER_ID)
    )
    out.mkdir(parents=True, exist_ok=True)
    events.write_parquet(out / "events.parquet")
    return out / "events.parquet"


@pytest.fixture(scope="module")
def faulty_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty")
    spec = SyntheticSpec(users=300, items=150, days=5, seed=11, end_date=DEMO_END)
    manifest = write_demo_data(root / "events", spec, FaultSpec())
    return root / "events", manifest


def test_demo_faults_are_quarantined_with_exactly_the_injected_counts(faulty_demo, tmp_path):
    source, manifest = faulty_demo
    run_date = DEMO_END + timedelta(days=1)
    config = NightrecConfig(events=str(source), data_dir=tmp_path, run_date=run_date)
    report = validate_file(
        ingest(config.events, config.format, config.run_dir(run_date) / EVENTS_FILE), config, run_date
    )

    expected = {FAULT_TO_RULE.get(name, name): n for name, n in manifest["faults"].items()}
    assert {name: n for name, n in report["by_reason"].items() if n} == expected
    assert report["status"] == "warn" and report["failed"]["error"] == []
    assert report["rows_in"] == manifest["rows"] == report["rows_clean"] + report["rows_quarantined"]
    assert report["reconciled"] is True
    quarantine = pl.read_parquet(config.run_dir(run_date) / QUARANTINE_FILE)
    by_reason = quarantine.get_column(REASONS).explode().value_counts()
    assert dict(by_reason.iter_rows()) == expected
    # The faults are disjoint rows, so each quarantined row names exactly one rule.
    assert quarantine.height == sum(expected.values())


@pytest.mark.integration
def test_cli_prints_the_table_and_exit_codes(demo_events, faulty_demo, tmp_path):
    from flows.cli import app

    runner = CliRunner()
    clean_dir, manifest = demo_events
    data = ["--data-dir", str(tmp_path / "data")]  # the GX project and its Data Docs live there
    result = runner.invoke(app, ["validate", str(clean_dir), "--run-date", manifest["run_date"], *data])
    assert result.exit_code == 0, result.output
    assert "required_columns" in result.output and "OK: rows in" in result.output

    faulty, manifest = faulty_demo
    out = tmp_path / "report"
    result = runner.invoke(app, ["validate", str(faulty), "--run-date", manifest["run_date"], "--out", str(out), *data])
    assert result.exit_code == 1, result.output
    assert "WARN: rows in" in result.output and "bot_user 300" in result.output
    assert (out / "validation.json").is_file()
    assert (tmp_path / "data" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()

    bad = thirty_percent_null_users(faulty, tmp_path / "bad")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "flows.cli", "validate", str(bad), "--run-date", manifest["run_date"], *data]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ERROR: rows in" in proc.stdout and "null_user_id" in proc.stdout

    proc = subprocess.run(
        [*cmd[:4], str(tmp_path / "nowhere"), *data], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "nowhere" in proc.stderr


@pytest.fixture(scope="module")
def good_then_bad_night(prefect_harness, tmp_path_factory):
    """A good night published, then a night with 30% null user ids run through the real flow."""
    from flows.nightly import nightly

    root = tmp_path_factory.mktemp("nights")
    data_dir = root / "data"
    first = DEMO_END + timedelta(days=1)
    write_demo_data(root / "night1", SyntheticSpec(users=150, items=80, days=4, seed=5, end_date=DEMO_END))
    good = nightly(config=NightrecConfig(events=str(root / "night1"), data_dir=data_dir, run_date=first))

    second = first + timedelta(days=1)
    write_demo_data(root / "night2", SyntheticSpec(users=150, items=80, days=4, seed=6, end_date=first))
    bad_file = thirty_percent_null_users(root / "night2", root / "night2-bad")
    config = NightrecConfig(events=str(bad_file), data_dir=data_dir, run_date=second)
    state = nightly(config=config, return_state=True)
    return good, state, config, first, second


@pytest.mark.integration
def test_a_bad_night_fails_the_flow_and_keeps_yesterdays_table(good_then_bad_night):
    good, state, config, first, second = good_then_bad_night
    assert good["validation"]["status"] in ("ok", "warn")
    assert state.is_failed()
    assert "null_user_id" in state.message and "validation failed" in state.message
    with pytest.raises(Exception, match="null_user_id"):
        state.result()
    report = config.run_dir(second) / "validation.json"
    assert report.is_file() and '"status": "error"' in report.read_text()
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        dates = con.execute("SELECT DISTINCT run_date FROM recommendations_latest").fetchall()
        rows = con.execute("SELECT count(*) FROM recommendations_latest").fetchone()[0]
    assert dates == [(first,)] and rows > 0
    assert not (config.data_dir / "recommendations" / f"run_date={second.isoformat()}").exists()
