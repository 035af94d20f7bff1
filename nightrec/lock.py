"""One run at a time per data directory: ``<data dir>/.nightrec.lock``, held with ``flock``.

Two runs on one directory would train into the same work folder and race on the served table.
The kernel drops the lock when its holder exits, however it exits, so a killed run never leaves
a stale lock behind; the file only says who holds it, for the second run's message.
"""

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from nightrec.errors import NightrecError
from nightrec.layout import LOCK_FILE


def _acquire(data_dir: Path) -> int:
    path = Path(data_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise NightrecError(
            f"{Path(data_dir)}: another nightrec run is using this data directory ({holder}); "
            "wait for it to finish or use another --data-dir"
        ) from None
    return fd


def holder(data_dir: Path) -> str:
    """What the lock file says about its holder ("" when there is none to read)."""
    try:
        return (Path(data_dir) / LOCK_FILE).read_text(errors="replace").strip()
    except OSError:
        return ""


def ensure_free(data_dir: Path) -> None:
    """Fail now, with the holder named, if a run holds the lock (the CLI's early check)."""
    os.close(_acquire(data_dir))


@contextlib.contextmanager
def run_lock(data_dir: Path, what: str = "run", wait_for: str | None = None, wait_seconds: float = 0) -> Iterator[Path]:
    """Hold the data directory's lock for the body; raise ``NightrecError`` at once if another
    process (or another run in this one) holds it, unless the holder's description starts with
    ``wait_for``: that one is waited for, up to ``wait_seconds`` (a night waits for a refresh,
    which takes minutes, instead of failing)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fd = _acquire(data_dir)
            break
        except NightrecError:
            if wait_for is None or time.monotonic() >= deadline or not holder(data_dir).startswith(wait_for):
                raise
            time.sleep(1.0)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC".encode(), 0)
        yield Path(data_dir) / LOCK_FILE
    finally:
        os.close(fd)  # closing the descriptor releases the lock
