"""The CLI as a user runs it: a real subprocess, one-line errors with exit code 2, the demo path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nightrec.ingest.readers import read_events

NIGHTREC = str(Path(sys.executable).parent / "nightrec")


pytestmark = [pytest.mark.integration]


def _run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([NIGHTREC, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)


def test_help_lists_the_commands():
    out = _run("--help")
    assert out.returncode == 0
    for command in ("run", "demo-data", "recommend"):
        assert command in out.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["run", "--events", "/no/such/events"], {}, "error: /no/such/events: no such file or folder"),
        (["run"], {}, "error: no input events: pass --events PATH or set NIGHTREC_EVENTS"),
        (["run", "--events", "x", "--k", "0"], {}, "error: invalid configuration: k: Input should be greater than"),
        (["run", "--events", "x"], {"NIGHTREC_K": "many"}, "NIGHTREC_K"),
        (["recommend", "u1", "--data-dir", "/no/such/dir"], {}, "no published recommendations yet"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, env, expected):
    out = _run(*args, env=env)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_column_and_timestamp_name_the_file(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,event_type,timestamp\nu,i,view,yesterday\n")
    out = _run("run", "--events", str(tmp_path / "a.csv"), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2
    # a bad timestamp is validation's to quarantine; with no usable one, no run date can be had
    assert f"error: {tmp_path / 'a.csv'}: no event has a usable 'timestamp'" in out.stderr
    (tmp_path / "b.csv").write_text("user,item_id,event_type,timestamp\nu,i,view,2024-01-01\n")
    out = _run("run", "--events", str(tmp_path / "b.csv"))
    assert out.returncode == 2 and "missing required column 'user_id'" in out.stderr


def test_demo_data_writes_the_demo_log_from_a_relative_path(tmp_path):
    # relative paths from the working directory, exactly as the Makefile passes them
    out = _run(
        "demo-data", "--out", "nightrec-data/events", "--users", "150", "--items", "80", "--days", "3", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    events = read_events(tmp_path / "nightrec-data" / "events")
    assert events["user_id"].n_unique() == 150 and events["item_id"].n_unique() <= 80


@pytest.mark.integration
def test_recommend_shows_a_users_list_and_samples_like_make_demo(demo_night):
    config, _ = demo_night
    k = config.k
    data = str(config.data_dir)
    out = _run("recommend", "u000003", "--data-dir", data)
    assert out.returncode == 0, out.stderr
    assert "user u000003" in out.stdout
    assert f"│ {k} " in out.stdout and f"│ {k + 1} " not in out.stdout  # ranks 1..K
    out = _run("recommend", "--sample", "3", "--data-dir", data)
    assert out.stdout.count("user u0000") == 3
