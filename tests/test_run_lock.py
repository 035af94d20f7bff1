"""One run per data directory: a second run fails at once with one line, and a killed holder
leaves no stale lock."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightrec.errors import NightrecError
from nightrec.layout import LOCK_FILE, models_dir, runs_dir
from nightrec.lock import run_lock
from tests.publish_fixtures import ROOT, subprocess_env

HOLDER = """
import time
from pathlib import Path
from nightrec.lock import run_lock
with run_lock(Path({data!r}), {what!r}):
    Path({marker!r}).write_text("held")
    time.sleep({seconds})
"""


def _hold(tmp_path: Path, data: Path, what: str = "holder", seconds: float = 600) -> subprocess.Popen:
    marker = tmp_path / "held"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(data=str(data), marker=str(marker), what=what, seconds=seconds))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=subprocess_env())
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return proc


def test_a_second_run_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    data = tmp_path / "data"
    holder = _hold(tmp_path, data)
    try:
        with pytest.raises(NightrecError, match=rf"another nightrec run .*holder pid {holder.pid}"), run_lock(data):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the kernel released the dead holder's lock; a second run in this process is refused too
    with run_lock(data), pytest.raises(NightrecError), run_lock(data):
        pass


def test_cli_run_on_a_busy_data_dir_is_one_line_and_touches_nothing(tmp_path, demo_events):
    events, _ = demo_events
    data = tmp_path / "data"
    holder = _hold(tmp_path, data)
    try:
        out = subprocess.run(
            [str(Path(sys.executable).parent / "nightrec"), "run", "--events", str(events), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=300,
        )
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert out.returncode == 2, out.stderr
    assert "another nightrec run is using this data directory" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(p.name for p in data.iterdir()) == [LOCK_FILE], "no models, runs or partial folders"


@pytest.mark.integration
def test_the_flow_itself_holds_the_lock(prefect_harness, demo_events, tmp_path):
    from tests.flow_fixtures import NIGHT1, run_night, small_config

    config = small_config(tmp_path / "data", demo_events[0])
    with run_lock(config.data_dir, "another flow"):
        state = run_night(config, NIGHT1)
    assert state.is_failed() and "another nightrec run" in state.message, state.message
    assert not models_dir(config.data_dir).exists() and not runs_dir(config.data_dir).exists()


def test_a_night_waits_for_a_refresh_holding_the_lock_and_for_nothing_else(tmp_path):
    """A refresh takes minutes: the night waits for it; any other holder still fails it at once."""
    data = tmp_path / "data"
    refresh = _hold(tmp_path, data, "refresh flow run 1", seconds=3)
    started = time.monotonic()
    with run_lock(data, "nightly", wait_for="refresh", wait_seconds=120):
        waited = time.monotonic() - started
    refresh.wait()
    assert waited >= 1, "the night waited for the refresh to let go"
    (tmp_path / "held").unlink()
    other = _hold(tmp_path, data, "forget")
    try:
        started = time.monotonic()
        with (
            pytest.raises(NightrecError, match="forget"),
            run_lock(data, "nightly", wait_for="refresh", wait_seconds=120),
        ):
            pass
        assert time.monotonic() - started < 30, "no wait behind anything but a refresh"
    finally:
        os.kill(other.pid, signal.SIGKILL)
        other.wait()
