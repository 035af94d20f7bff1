"""The refresh watermark: the day's events at or before it were read by an earlier run.

It belongs to the night the refreshes extend (``runs/<D>/refresh/state.json``): the nightly of
``D`` read every event before midnight of ``D``, so the first refresh of that night reads from
midnight on, and a new night starts again from its own midnight. Events that arrive late, with a
timestamp at or before the watermark, are left to the next nightly, which reads the whole source.
"""

import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightrec.layout import REFRESH_DIR, REFRESH_STATE_FILE, run_dir

ONE_TICK = timedelta(microseconds=1)  # the event contract's timestamp resolution


def refresh_work_dir(data_dir: Path, run_date: date) -> Path:
    """``runs/<D>/refresh/``: the state and one folder per refresh of night ``D``."""
    return run_dir(data_dir, run_date) / REFRESH_DIR


def night_end(run_date: date) -> datetime:
    """Midnight UTC of the run date: the night ``run_date`` covers every event before it."""
    return datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)


@dataclass(frozen=True)
class RefreshState:
    run_date: date  # the published night the refreshes extend
    watermark: datetime  # events strictly after it are new
    refreshes: int = 0

    def to_json(self) -> dict:
        return {
            "run_date": self.run_date.isoformat(),
            "watermark": self.watermark.isoformat(),
            "refreshes": self.refreshes,
        }


def read_state(data_dir: Path, run_date: date) -> RefreshState:
    """The state of night ``run_date``'s refreshes; a night without one starts at its midnight."""
    path = refresh_work_dir(data_dir, run_date) / REFRESH_STATE_FILE
    if not path.is_file():
        return RefreshState(run_date, night_end(run_date) - ONE_TICK, 0)
    saved = json.loads(path.read_text())
    return RefreshState(run_date, datetime.fromisoformat(saved["watermark"]), int(saved["refreshes"]))


def write_state(data_dir: Path, state: RefreshState) -> Path:
    """Replace the state atomically (after the refresh published: a failed one is read again)."""
    path = refresh_work_dir(data_dir, state.run_date) / REFRESH_STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    os.replace(tmp, path)
    return path
