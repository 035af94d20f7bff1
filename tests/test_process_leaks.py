"""No process outlives the run: a trainer whose launcher is SIGKILLed stops, a SIGTERMed or
SIGKILLed ``nightrec run`` takes its ephemeral Prefect server and its trainer with it, and a run
whose server dies fails at once in one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.process_fixtures import descendants
from tests.publish_fixtures import ROOT, subprocess_env

LAUNCHER = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", {child!r}],
    env={{**os.environ, "NIGHTREC_DIE_WITH_PARENT": "1"}},
    start_new_session=True,
)
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import time
from pathlib import Path
from lightning_modules.lifeline import die_with_parent
assert die_with_parent(poll_s=0.1)
beat = Path({beat!r})
while True:
    beat.write_text(str(time.time()))
    time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_trainer_stops_when_its_launcher_is_killed(tmp_path):
    beat = tmp_path / "beat"
    code = LAUNCHER.format(child=CHILD.format(beat=str(beat)))
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    child = int(launcher.stdout.readline())
    deadline = time.monotonic() + 60
    while not beat.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    assert _wait_gone(child), "the trainer outlived the run that launched it"
    last = beat.stat().st_mtime
    time.sleep(0.5)
    assert beat.stat().st_mtime == last, "nothing writes after the launcher died"


@pytest.mark.integration
def test_sigterm_of_nightrec_run_leaves_no_process_behind(tmp_path, demo_events):
    events, _ = demo_events
    cli = Path(sys.executable).parent / "nightrec"
    env = {k: v for k, v in subprocess_env().items() if k != "PREFECT_API_URL"}
    run = subprocess.Popen(
        [str(cli), "run", "--events", str(events), "--data-dir", str(tmp_path / "data")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    seen: set[int] = set()
    while not (tmp_path / "data" / "runs").exists():  # the flow started: its server is up
        assert run.poll() is None and time.monotonic() < deadline, "the run never started"
        seen |= descendants(run.pid)
        time.sleep(0.2)
    seen |= descendants(run.pid)
    assert seen, "the run has an ephemeral server (a child process)"
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=120)
    left = [pid for pid in seen if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the run: {left}"


def _start_run(events: Path, data: Path) -> subprocess.Popen:
    """``nightrec run`` in ephemeral mode with demo-sized training, its stderr piped."""
    env = {k: v for k, v in subprocess_env().items() if k != "PREFECT_API_URL"}
    env.update({"NIGHTREC_TRAIN__EPOCHS": "2", "NIGHTREC_MODEL__HIDDEN_SIZE": "16", "NIGHTREC_K": "10"})
    cli = Path(sys.executable).parent / "nightrec"
    return subprocess.Popen(
        [str(cli), "run", "--events", str(events), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _server_of(run: subprocess.Popen, data: Path) -> int:
    """The pid of the run's Prefect server, once the flow has started."""
    deadline = time.monotonic() + 240
    while not (data / "runs").exists():
        assert run.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    servers = [pid for pid in descendants(run.pid) if "uvicorn" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(servers) == 1, "the run has one ephemeral server (a child process)"
    return servers[0]


@pytest.mark.integration
def test_sigkill_of_nightrec_run_takes_its_prefect_server_with_it(tmp_path, demo_events):
    data = tmp_path / "data"
    run = _start_run(demo_events[0], data)
    server = _server_of(run, data)
    seen = descendants(run.pid)
    run.kill()
    run.wait(timeout=30)
    gone = _wait_gone(server, timeout=20)
    left = [pid for pid in seen if not _wait_gone(pid, timeout=10)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert gone, "the ephemeral Prefect server outlived the SIGKILLed run"
    assert not left, f"processes outlived the run: {left}"


@pytest.mark.integration
def test_a_run_whose_prefect_server_dies_fails_at_once_in_one_line(tmp_path, demo_events):
    data = tmp_path / "data"
    run = _start_run(demo_events[0], data)
    server = _server_of(run, data)
    seen = descendants(run.pid)
    os.kill(server, signal.SIGKILL)
    start = time.monotonic()
    try:
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    took = time.monotonic() - start
    left = [pid for pid in seen if not _wait_gone(pid, timeout=10)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert run.returncode not in (0, None) and took < 15, (run.returncode, took)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: the Prefect server of this run") and "exited" in lines[-1], err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert not left, f"processes outlived the run: {left}"


@pytest.mark.integration
def test_a_completed_nightrec_run_exits_0_and_stops_its_server(tmp_path, demo_events):
    data = tmp_path / "data"
    run = _start_run(demo_events[0], data)
    server = _server_of(run, data)
    seen = {server}
    while True:
        seen |= descendants(run.pid)
        try:
            _, err = run.communicate(timeout=0.2)  # drains stderr while it runs
            break
        except subprocess.TimeoutExpired:
            continue
    assert run.returncode == 0, err[-2000:]
    assert "error:" not in err, "the server's stop at exit is not taken for a death"
    assert not [pid for pid in seen if not _wait_gone(pid, timeout=10)]
