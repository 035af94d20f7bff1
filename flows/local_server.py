"""A local Prefect server and the serving process, for ``make ui`` and the integration test.

``python -m flows.local_server [--port N] [serve options]`` starts ``prefect server start`` on
127.0.0.1, waits until its API answers, prints the UI address, then runs ``nightrec serve``
against it. Ctrl-C stops the serving process first, then the server.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class LocalServer:
    """``prefect server start`` on a local port, as a context manager that waits for health."""

    def __init__(
        self,
        port: int | None = None,
        host: str = HOST,
        env: dict[str, str] | None = None,
        log: IO | None = None,
        ui: bool = True,
    ):
        self.host, self.port = host, port or free_port(host)
        self.env, self.log, self.ui = env or {}, log, ui
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The environment a process needs to talk to this server."""
        return _env({**self.env, "PREFECT_API_URL": self.api_url, "PREFECT_UI_URL": self.ui_url})

    def start(self, timeout_s: float = 120.0) -> "LocalServer":
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)]
        cmd.append("--ui" if self.ui else "--no-ui")
        env = _env(self.env)
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_UI_API_URL"] = (
            self.api_url
        )  # the UI's own API address; on a non-default port it is blank without it
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=self.log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {self.proc.returncode} before answering")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"prefect server did not answer on {self.api_url} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_serving(server: LocalServer, args: list[str], log: IO | None = None) -> subprocess.Popen:
    """``nightrec serve ARGS`` against ``server``, in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", *args],
        env=server.client_env(),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT if log else None,
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_UI_PORT", "4200")))
    known, serve_args = parser.parse_known_args(argv)

    def _terminate(signum, frame):  # a SIGTERM stops both children too, like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(f"starting a Prefect server on {HOST}:{known.port} ...", flush=True)
    with LocalServer(port=known.port) as server:
        print(f"Prefect UI: {server.ui_url}", flush=True)
        print(f"in another shell: export PREFECT_API_URL={server.api_url}", flush=True)
        serving = start_serving(server, serve_args)
        try:
            return serving.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            stop_process(serving)


if __name__ == "__main__":
    sys.exit(main())
