"""Faults injected into a real ``nightrec run`` (the CLI, a real Prefect server) on top of one good
published night, retention on (``publish.retention_days=1``): SIGKILLs at stage boundaries, a
read-only publish target, an unreachable PostgreSQL, a dying Prefect server and a second
concurrent run. After each: the served table (the Parquet partitions and the DuckDB file) is
byte-identical to before, no process of the run is left, and the next run publishes the night.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from flows.local_server import LocalServer
from nightrec.publish.local import TABLE, file_sha256, published_dates
from tests.flow_fixtures import NIGHT2
from tests.process_fixtures import descendants
from tests.publish_fixtures import ROOT, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = Path(sys.executable).parent / "nightrec"
# the settings of the shared demo night (tests/flow_fixtures.small_config), retention on
SETTINGS = {
    "NIGHTREC_K": "10",
    "NIGHTREC_MODEL__EMBEDDING_DIM": "16",
    "NIGHTREC_MODEL__HIDDEN_SIZE": "16",
    "NIGHTREC_TRAIN__EPOCHS": "2",
    "NIGHTREC_TRAIN__BATCH_SIZE": "128",
    "NIGHTREC_TRAIN__NUM_THREADS": "1",
    "NIGHTREC_POPULARITY__MIN_HISTORY": "3",
    "NIGHTREC_PUBLISH__RETENTION_DAYS": "1",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One Prefect server for the module's runs (an ephemeral one per run costs 20 s each)."""
    with LocalServer(ui=False, env={"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}) as srv:
        yield srv


class Run:
    """``nightrec run`` on night 2 of the demo log: its output lines, and every process it started."""

    def __init__(self, data: Path, events: Path, env: dict[str, str], wrap: list[str] = ()):
        self.data, self.lines, self.pids = data, [], set()
        self.kill_needle: str | None = None
        args = [str(CLI), "run", "--events", str(events), "--data-dir", str(data)]
        self.proc = subprocess.Popen(
            [*wrap, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._track, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())  # before the kill: wait_for then sees why the run ended
            if self.kill_needle is not None and self.kill_needle in line and self.proc.poll() is None:
                # killed from the reading thread the moment the line arrives: polling for it would
                # let a fast next stage (a small night's publish) start before the kill lands
                self.pids |= descendants(self.proc.pid)
                self.proc.kill()

    def _track(self) -> None:
        while self.proc.poll() is None:
            self.pids |= descendants(self.proc.pid)
            time.sleep(0.05)

    def wait_for(self, needle: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            ended = self.proc.poll() is not None and not any(needle in line for line in self.lines)
            assert not ended, f"the run ended before {needle!r}:\n" + "\n".join(self.lines[-30:])
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s"
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # the reader thread drains the pipe
        return code

    def kill_at(self, needle: str, timeout: float = 300) -> None:
        """SIGKILL the run as soon as a line containing ``needle`` is printed."""
        self.kill_needle = needle
        if not any(needle in line for line in self.lines):
            self.wait_for(needle, timeout)
        self.kill()

    def kill(self) -> None:
        self.pids |= descendants(self.proc.pid)
        self.proc.kill()
        self.proc.wait(timeout=30)

    def output(self) -> str:
        return "\n".join(self.lines[-40:])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _using(data: Path) -> list[int]:
    """Processes whose command line names the data directory (a trainer, a second run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(data) in (entry / "cmdline").read_bytes().decode(errors="replace") and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_nothing_left(run: Run, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in run.pids if _alive(pid)] + _using(run.data)
        if not left:
            return
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"processes outlived the run: {left}")


def served(data: Path) -> dict:
    """Every byte a reader can see: the files under ``recommendations/``, the DuckDB file, and
    the rows of ``recommendations_latest``."""
    root = data / TABLE
    files = {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    with duckdb.connect(str(data / "nightrec.duckdb"), read_only=True) as con:
        latest = con.sql("SELECT * FROM recommendations_latest ORDER BY user_id, rank").fetchall()
    return {"files": files, "duckdb": file_sha256(data / "nightrec.duckdb"), "latest": latest}


@pytest.fixture
def night(night_copy, night2_events, server):
    """A copy of the published demo night, the night-2 log, and the environment of a run on it."""
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("NIGHTREC_")} | SETTINGS
    env |= server.client_env()
    return night_copy.data_dir, night2_events, env


@pytest.fixture
def untrained_night(night):
    """``night`` where night 2 reuses the champion: faults unrelated to training skip it."""
    data, events, env = night
    return data, events, env | {"NIGHTREC_ORCHESTRATION__RETRAIN_EVERY_DAYS": "2"}


def assert_next_run_publishes(data: Path, events: Path, env: dict[str, str]) -> None:
    run = Run(data, events, env)
    assert run.finish() == 0, run.output()
    assert published_dates(data) == [NIGHT2], "night 2 published, night 1 gone by retention"
    assert {row[0] for row in served(data)["latest"]} == {NIGHT2}
    assert not (data / ".publish").exists() or not any((data / ".publish").glob("txn-*"))
    assert_nothing_left(run)


# Each run resumes from the stages the killed one finished (cached), so one chain of runs kills
# at every boundary in about the time of two full nights; the last run of the chain completes.
# A needle is the first line of a stage's task run (Prefect logs "Finished in state ..." at least).
BOUNDARIES = [
    ("validate starts", "Task run 'ingest-"),
    ("the behaviour report starts", "Task run 'validate-"),
    ("sequences start", "Task run 'behavior-"),
    ("training starts", "Task run 'sequences-"),
    ("the trainer runs", '"event": "epoch"'),
    ("promotion starts", "Task run 'evaluate-"),
    ("scoring starts", "Task run 'promote-"),
    ("the fallback starts", "Task run 'score-"),
    ("publish starts", "Task run 'fallback-"),
]


def test_a_run_killed_at_any_stage_boundary_leaves_the_table_and_the_next_run_publishes(night):
    data, events, env = night
    before = served(data)
    for boundary, needle in BOUNDARIES:
        run = Run(data, events, env)
        run.kill_at(needle)
        assert served(data) == before, f"killed when {boundary}: the served table changed"
        assert_nothing_left(run)
    # killed once publish committed (promotion, report and artifacts still to come): night 2 serves
    run = Run(data, events, env)
    run.wait_for("Task run 'publish-")
    run.kill()
    assert_nothing_left(run)
    after = served(data)
    assert published_dates(data) == [NIGHT2] and {row[0] for row in after["latest"]} == {NIGHT2}
    assert_next_run_publishes(data, events, env)
    assert served(data)["latest"] == after["latest"], "the rerun publishes the same rows"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_only(data: Path) -> list[str]:
    """A wrapper running the CLI with ``recommendations/`` read-only (root ignores modes: a
    read-only bind mount in a private mount namespace)."""
    target = data / TABLE
    if os.geteuid() != 0:
        target.chmod(0o555)
        return []
    script = f'mount --bind "{target}" "{target}" && mount -o remount,ro,bind "{target}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


FAULTS = ["read-only target", "unreachable postgres", "prefect server dies"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failing_night_leaves_the_table_and_the_next_run_publishes(untrained_night, fault):
    data, events, env = untrained_night
    before = served(data)
    wrap: list[str] = []
    faulty = dict(env)
    if fault == "read-only target":
        wrap = _read_only(data)
    elif fault == "unreachable postgres":
        faulty["NIGHTREC_PUBLISH__POSTGRES_URL"] = f"postgresql://u:p@127.0.0.1:{_closed_port()}/db"
    else:
        # its own ephemeral server (and database), killed once the flow has begun
        faulty.pop("PREFECT_API_URL")
        faulty["PREFECT_HOME"] = str(data.parent / "prefect-ephemeral")
    run = Run(data, events, faulty, wrap)
    if fault == "prefect server dies":
        run.wait_for("Task run 'sequences-")
        servers = [p for p in descendants(run.proc.pid) if b"uvicorn" in Path(f"/proc/{p}/cmdline").read_bytes()]
        os.kill(servers[0], signal.SIGKILL)
        started = time.monotonic()
        assert run.finish(timeout=60) != 0 and time.monotonic() - started < 15, run.output()
    else:
        assert run.finish() != 0, run.output()
    (data / TABLE).chmod(0o755)
    assert run.lines[-1].startswith("error: ") and "Traceback" not in run.output(), run.output()
    assert not any("AwaitingRetry" in line for line in run.lines), "a fault a person fixes is not retried"
    assert served(data) == before
    assert_nothing_left(run)
    assert_next_run_publishes(data, events, env)


def test_a_second_concurrent_run_is_refused_and_the_first_publishes(untrained_night):
    data, events, env = untrained_night
    before = served(data)
    first = Run(data, events, env)
    first.wait_for("Task run 'ingest-")  # the flow holds the data directory's lock
    second = Run(data, events, env)
    assert second.finish(timeout=120) == 2, second.output()
    assert len(second.lines) == 1 and "another nightrec run" in second.lines[0], second.output()
    assert served(data) == before
    assert first.finish() == 0, first.output()
    assert published_dates(data) == [NIGHT2]
    assert_nothing_left(first)
