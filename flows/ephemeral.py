"""The ephemeral Prefect server of ``nightrec run``, tied to the life of the CLI.

Prefect's ephemeral mode starts ``uvicorn prefect.server.api.server:create_app`` as a plain child
process and stops it from an ``atexit`` hook, which a SIGKILL of the CLI never runs: the server
(about 200 MB) would outlive the run. ``start_tied_server`` starts that same server first, from
the main thread, with ``PR_SET_PDEATHSIG`` so the kernel stops it when the CLI dies however it
dies; Prefect's clients then find it as their ephemeral server (one per process). While the
flow runs, ``tied_server`` also ends the run in one line if the server dies under it, instead of
retrying a dead API.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings

PR_SET_PDEATHSIG = 1
SERVER_DIED_EXIT = 3


def _die_with(parent: int) -> Callable[[], None]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child

    def preexec() -> None:
        # SIGTERM lets uvicorn shut down; the check closes the race with a parent dying before prctl
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class TiedServer(SubprocessASGIServer):
    """Prefect's ephemeral server process, started with ``PR_SET_PDEATHSIG`` (Linux)."""

    def _run_uvicorn_command(self) -> subprocess.Popen:
        # The command and environment of SubprocessASGIServer._run_uvicorn_command (Prefect 3.9).
        server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        args = ["--app-dir", str(prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app"]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args],
            env={**os.environ, **server_env, **get_current_settings().to_environment_variables(exclude_unset=True)},
            preexec_fn=_die_with(os.getpid()),
        )


def start_tied_server() -> TiedServer | None:
    """Start the ephemeral server this process's Prefect clients will use; None when a server is
    configured (PREFECT_API_URL) or the platform has no ``prctl`` (Prefect then starts its own).

    Call it from the main thread: the kernel sends the death signal when the *thread* that
    started the child ends.
    """
    if PREFECT_API_URL.value() or not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start_tied_server must run in the main thread")
    server = TiedServer()  # Prefect's SubprocessASGIServer() now returns this same instance
    server.start()
    return server


def watch(server: TiedServer, poll_s: float = 0.5) -> threading.Event:
    """End this process at once, with one line on stderr, if ``server`` exits before the
    returned event is set.

    A run without its API cannot record any state; Prefect's clients would retry the dead
    server for minutes instead. The trainer dies with this process (its lifeline), the run
    lock with its file descriptor, and the next publish rolls back an unfinished one.
    """
    proc = server.server_process
    done = threading.Event()

    def loop() -> None:
        while not done.wait(poll_s):
            if proc.poll() is not None and not done.is_set():
                sys.stderr.write(
                    f"error: the Prefect server of this run (pid {proc.pid}) exited with code "
                    f"{proc.returncode} under the run; the run stopped, run it again\n"
                )
                sys.stderr.flush()
                os._exit(SERVER_DIED_EXIT)

    threading.Thread(target=loop, name="prefect-server-watch", daemon=True).start()
    return done


@contextmanager
def tied_server() -> Iterator[TiedServer | None]:
    """The ephemeral server for a flow run in this block (``start_tied_server``), watched until
    the block ends, so that its stop at exit is not mistaken for a death."""
    server = start_tied_server()
    if server is None:
        yield None
        return
    done = watch(server)
    try:
        yield server
    finally:
        done.set()
