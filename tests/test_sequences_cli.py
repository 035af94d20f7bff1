"""``nightrec sequences``: default output folder under the run, the printed stats, bad input."""

import json
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app, main
from nightrec.sequences.build import read_sequences
from tests.sequence_fixtures import events


def test_default_output_is_the_runs_folder(demo_events, tmp_path, monkeypatch):
    source, manifest = demo_events
    data_dir = tmp_path / "data"
    # every row kept: collapsing repeats drops a one-item session that reopens the user's last item
    monkeypatch.setenv("NIGHTREC_SEQUENCES__COLLAPSE_REPEATS", "false")
    result = CliRunner().invoke(
        app, ["sequences", str(source), "--data-dir", str(data_dir), "--run-date", "2026-03-11"]
    )
    assert result.exit_code == 0, result.output
    run_dir = data_dir / "runs" / "2026-03-11"
    seqs = read_sequences(run_dir / "sequences")
    stats = json.loads((run_dir / "sequence_stats.json").read_text())
    assert stats == seqs.stats
    assert stats["users"] == seqs.full.height == manifest["users"]
    assert f"{stats['users']} users, {stats['items']} items" in result.output
    # Demo events carry session ids, so sessions follow them.
    assert stats["sessions"]["total"] >= pl.read_parquet(source / "*.parquet").get_column("session_id").n_unique()


def test_temporal_split_from_the_environment(demo_events, tmp_path, monkeypatch):
    source, _ = demo_events
    monkeypatch.setenv("NIGHTREC_SEQUENCES__SPLIT", "temporal")
    monkeypatch.setenv("NIGHTREC_SEQUENCES__TEMPORAL_CUTOFF", "2026-03-10T00:00:00Z")
    result = CliRunner().invoke(app, ["sequences", str(source), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    stats = read_sequences(tmp_path / "s").stats
    assert stats["split"]["kind"] == "temporal"
    assert stats["split"]["cutoffs"] == {"valid": "2026-03-09T00:00:00+00:00", "test": "2026-03-10T00:00:00+00:00"}
    assert stats["split"]["test_targets"] > 0 and stats["split"]["valid_targets"] > 0


def test_null_key_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.parquet"
    frame = events([("u1", "a", 0), ("u1", "b", 1)])
    frame.with_columns(pl.Series("item_id", ["a", None])).write_parquet(path)
    monkeypatch.setattr(sys, "argv", ["nightrec", "sequences", str(path), "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "column 'item_id' has 1 null" in err and "\n" not in err
