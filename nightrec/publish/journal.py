"""The publish journal: what a night's publish must undo if any target fails, or if it is killed.

Before a publish touches a target it records, in ``<data dir>/.publish/txn-<pid>-<id>/``, the
state to restore: hard links to tonight's partition files (when the date was published before)
and to the live DuckDB file. Hard links cost nothing and keep the old bytes, because every swap
replaces a directory entry and never rewrites a file in place. ``journal.json`` is written last
and atomically, so a journal without it never reached a target and is simply discarded.

A failed publish rolls back in-process; one that was killed is rolled back by the next publish
(``recover``), which only touches journals whose writer is dead. Staging folders live in the
same ``.publish`` folder, never under ``recommendations/``, so a reader that lists partitions
only ever sees complete ``run_date=`` folders.

PostgreSQL is the last target and commits on its own, so a kill between its commit and
``commit`` here would leave it a night ahead of the files. Its swap therefore records the
journal's id (``txn``) in the same transaction; ``recover`` asks PostgreSQL about a journal that
names it and keeps (rolls forward) a night PostgreSQL committed instead of rolling it back.
"""

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

STAGING_DIR = ".publish"
JOURNAL_FILE = "journal.json"
PARTITION_BACKUP = "partition"
DUCKDB_BACKUP = "duckdb"
PREPARED, COMMITTED = "prepared", "committed"


def staging_dir(data_dir: Path) -> Path:
    """``<data dir>/.publish``: temporary partitions, doomed ones and journals (one file system)."""
    folder = Path(data_dir) / STAGING_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_dead(name: str, prefix: str) -> bool:
    """Whether ``<prefix><pid>-...`` names a writer that no longer runs."""
    pid = name[len(prefix) :].split("-", 1)[0]
    return name.startswith(prefix) and pid.isdigit() and not pid_alive(int(pid))


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale(folder: Path, prefix: str) -> None:
    """Delete leftovers (``<prefix><pid>-...``) of writers that were killed mid-publish."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if owner_dead(child.name, prefix):
            remove_path(child)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported: a copy keeps the bytes too
        shutil.copy2(src, dst)


class PublishJournal:
    """The undo record of one publish; ``begin`` it before the first target is touched."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = folder
        self.meta = meta

    @classmethod
    def begin(
        cls, data_dir: Path, partition: Path, db_path: Path | None, postgres: dict | None = None
    ) -> "PublishJournal":
        """``postgres``: the schema and table the publish writes to (never the URL, a secret)."""
        folder = staging_dir(data_dir) / f"txn-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        meta = {"state": PREPARED, "partition": str(partition), "partition_files": None, "duckdb": None}
        meta["postgres"] = postgres
        if partition.is_dir():
            (folder / PARTITION_BACKUP).mkdir()
            meta["partition_files"] = sorted(p.name for p in partition.iterdir() if p.is_file())
            for name in meta["partition_files"]:
                _link_or_copy(partition / name, folder / PARTITION_BACKUP / name)
        if db_path is not None:
            meta["duckdb"] = {"path": str(db_path), "existed": db_path.is_file()}
            if db_path.is_file():
                _link_or_copy(db_path, folder / DUCKDB_BACKUP)
        journal = cls(folder, meta)
        journal._write()
        return journal

    @property
    def txn(self) -> str:
        """The id PostgreSQL's swap records, so that ``recover`` can tell whether it committed."""
        return self.folder.name

    def _write(self) -> None:
        tmp = self.folder / f".{JOURNAL_FILE}.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2))
        fsync(tmp)
        os.replace(tmp, self.folder / JOURNAL_FILE)
        fsync(self.folder)

    def commit(self) -> None:
        """Every target holds tonight's table: from here on the night is never rolled back."""
        self.meta["state"] = COMMITTED
        self._write()

    def rollback(self) -> None:
        """Put every target back exactly as it was when the journal began."""
        if self.meta["state"] != COMMITTED:
            self._restore_partition()
            self._restore_duckdb()
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _restore_partition(self) -> None:
        partition = Path(self.meta["partition"])
        kept = self.meta["partition_files"]
        if kept is None:
            if partition.exists():
                # out of the listing in one rename, then deleted
                doomed = self.folder / f"undo-{partition.name}"
                partition.rename(doomed)
                remove_path(doomed)
            return
        partition.mkdir(parents=True, exist_ok=True)
        for child in partition.iterdir():
            if child.name not in kept:
                remove_path(child)
        for name in kept:
            os.replace(self.folder / PARTITION_BACKUP / name, partition / name)
        fsync(partition)

    def _restore_duckdb(self) -> None:
        duck = self.meta["duckdb"]
        if duck is None:
            return
        live = Path(duck["path"])
        if duck["existed"]:
            os.replace(self.folder / DUCKDB_BACKUP, live)
        else:
            live.unlink(missing_ok=True)
        fsync(live.parent)


PostgresCommitted = Callable[[dict, str], bool]


def recover(data_dir: Path, postgres_committed: PostgresCommitted | None = None) -> list[str]:
    """Finish the publishes whose writer was killed before committing; returns what was done
    to each (``<folder>: rolled back`` or ``<folder>: kept``).

    A journal that names PostgreSQL is kept when ``postgres_committed(journal's postgres, txn)``
    says PostgreSQL committed it: every target then already holds that night. Without the
    callable (PostgreSQL no longer configured) it is rolled back like any other.
    """
    folder = Path(data_dir) / STAGING_DIR
    if not folder.is_dir():
        return []
    recovered = []
    for child in sorted(folder.iterdir()):
        if not owner_dead(child.name, "txn-"):
            continue
        outcome = "rolled back"
        if (child / JOURNAL_FILE).is_file():
            with contextlib.suppress(json.JSONDecodeError):
                journal = PublishJournal(child, json.loads((child / JOURNAL_FILE).read_text()))
                pg = journal.meta.get("postgres")
                if pg and postgres_committed is not None and postgres_committed(pg, journal.txn):
                    outcome = "kept"
                    journal.close()
                else:
                    journal.rollback()
        shutil.rmtree(child, ignore_errors=True)
        recovered.append(f"{child.name}: {outcome}")
    return recovered
