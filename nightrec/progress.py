"""Training progress across the subprocess boundary: one JSON object per stdout line.

The trainer (``python -m lightning_modules.train``) prints an ``epoch`` event after every epoch,
a ``refit`` event when the served weights are refitted (``lightning_modules.refit``) and a ``done``
event at the end; the flow reads them as data (``parse_progress``) and logs every
other line as it is.
"""

import json
from typing import Any

EPOCH = "epoch"
REFIT = "refit"
DONE = "done"


def progress_line(event: str, **fields: Any) -> str:
    """One event as a single JSON line."""
    return json.dumps({"event": event, **fields}, default=float)


def parse_progress(line: str) -> dict[str, Any] | None:
    """The event on ``line``, or None when the line is not a progress event."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
