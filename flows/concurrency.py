"""One run at a time per data directory, as Prefect sees it: a global concurrency limit of one
slot that the nightly, retrain and refresh flows share.

The UI shows the slot and who holds it (Concurrency); a refresh that finds it taken ends
Cancelled instead of waiting behind a night, and a night waits for a refresh in progress to
finish. The file lock (``nightrec.lock``) stays underneath as the guard that also holds between
processes tied to different Prefect servers.
"""

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from nightrec.errors import NightrecError

LIMIT_PREFIX = "nightrec-data-dir-"
# A night waits this long for a refresh in progress (a refresh takes minutes); then it fails.
NIGHT_WAIT_SECONDS = 30 * 60


class SlotBusy(NightrecError):
    """Another run of the same data directory holds the slot."""


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
def data_dir_slot(data_dir: Path, wait_seconds: float | None) -> Iterator[str]:
    """Hold the data directory's slot for the body; ``SlotBusy`` when it stays taken ``wait_seconds``."""
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
        raise SlotBusy(f"another nightrec run holds the data directory's slot ({name})") from None
