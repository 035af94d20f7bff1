"""One run at a time per data directory, as Prefect sees it: a global concurrency limit of one
slot that the nightly, retrain and refresh flows share, so the UI's Concurrency page shows which
run holds the data directory.

The guard itself is the file lock (``nightrec.lock``), taken first: the kernel frees it however
its holder ends, while a Prefect slot of a killed run stays taken until its lease expires. A run
that holds the lock and still finds the slot taken therefore knows the slot is stale, says so
and goes on without it.
"""

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

LIMIT_PREFIX = "nightrec-data-dir-"
REFRESH_HOLDER = "refresh"  # how a refresh names itself in the lock file (``nightrec.lock``)
# A night waits this long for a refresh in progress (a refresh takes minutes); then it fails.
NIGHT_WAIT_SECONDS = 30 * 60
# Under the file lock the slot is free unless a killed run left it: a short wait tells which.
SLOT_WAIT_SECONDS = 5.0


def limit_name(data_dir: Path) -> str:
    """``nightrec-data-dir-<hash>``: one limit per resolved data directory (names allow no '/')."""
    return LIMIT_PREFIX + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


def ensure_limit(name: str) -> None:
    """Create the one-slot limit unless it exists (Prefect 3 never creates one on first use)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run created it meanwhile
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


@contextlib.contextmanager
def data_dir_slot(data_dir: Path, wait_seconds: float = SLOT_WAIT_SECONDS) -> Iterator[str | None]:
    """Hold the data directory's slot for the body (call it holding the file lock); yields the
    limit's name, or None when a killed run's slot is still taken and the run goes on without it."""
    name = limit_name(data_dir)
    ensure_limit(name)
    acquired = False
    try:
        with concurrency(name, occupy=1, timeout_seconds=wait_seconds, strict=True):
            acquired = True
            yield name
    except TimeoutError:
        if acquired:  # the body's own time-out, not the slot's
            raise
        get_run_logger().warning(
            f"concurrency limit {name} is held by a run that no longer holds the data directory "
            "(killed; its lease expires on its own): going on without it"
        )
        yield None
