"""Helpers shared by the publishing tests: small known tables and writer/reader subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from nightrec.schema import RECOMMENDATION_SCHEMA, SOURCE_MODEL, SOURCE_POPULARITY

ROOT = Path(__file__).resolve().parents[1]


def table(run_date: date, users: int, k: int = 3, salt: int = 0) -> pl.DataFrame:
    """``users`` users with ``k`` rows each; ``salt`` changes the items and scores."""
    rows = [
        {
            "run_date": run_date,
            "user_id": f"u{u:05d}",
            "rank": r + 1,
            "item_id": f"i{(u + r + salt) % 997:04d}",
            "score": float(k - r) + salt / 10,
            "source": SOURCE_MODEL if u % 2 else SOURCE_POPULARITY,
            "model_version": "gru@test" if u % 2 else f"popularity@{run_date}",
        }
        for u in range(users)
        for r in range(k)
    ]
    return pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA)


def fingerprint(frame: pl.DataFrame) -> tuple:
    """What a reader compares: rows, users, the run date and the score total."""
    return (frame.height, frame["user_id"].n_unique(), str(frame["run_date"].max()), round(frame["score"].sum(), 3))


def postgres_url() -> str | None:
    """NIGHTREC_TEST_POSTGRES_URL as exported by ``tests/postgres_server.sh`` (absent: the tests skip)."""
    return os.environ.get("NIGHTREC_TEST_POSTGRES_URL") or None


def fresh_schema(url: str):
    """A new PostgreSQL schema for one test (a fixture's body: ``yield from``), dropped afterwards."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start(code: str, tmp_path: Path, name: str) -> subprocess.Popen:
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(proc: subprocess.Popen, marker: Path, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once it has written ``marker`` (it then sleeps, mid-publish)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("writer never reached the swap")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def read_states(proc: subprocess.Popen, timeout: float = 120) -> list:
    """Stop a reader loop (SIGTERM) and return what each of its queries saw."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line]
    assert not errors, f"reader queries failed: {errors[:3]} {err[-2000:]}"
    return [tuple(line["state"]) for line in lines]


READER_LOOP = """
import json, signal, sys, time
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
{setup}
print(json.dumps({{"ready": True, "state": []}}), flush=True)
while not stop:
    try:
        state = query()
        print(json.dumps({{"state": list(state)}}), flush=True)
    except Exception as exc:
        print(json.dumps({{"error": repr(exc), "state": []}}), flush=True)
    time.sleep(0.002)
"""


def reader_code(setup: str) -> str:
    """A reader process: ``setup`` defines ``query() -> fingerprint tuple``."""
    return READER_LOOP.format(setup=setup)


def wait_ready(proc: subprocess.Popen, timeout: float = 60) -> None:
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"reader did not start: {proc.stderr.read()}")
    assert json.loads(line)["ready"]
