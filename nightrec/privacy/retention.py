"""Raw per-night copies kept ``privacy.raw_retention_days``, apart from validation's notion of
an event too old to be real (``validation.retention_days``)."""

from datetime import date, timedelta
from pathlib import Path

from nightrec.layout import CLEAN_FILE, EVENTS_FILE, QUARANTINE_FILE, SHARDS_DIR, runs_dir
from nightrec.shards import remove_parts

# The files of runs/<date>/ that hold event rows as they came in; derived files stay.
RAW_COPIES = (EVENTS_FILE, CLEAN_FILE, QUARANTINE_FILE)


def apply_raw_retention(data_dir: Path, run_date: date, keep_days: int) -> list[str]:
    """Delete the raw copies of nights ``keep_days`` or more before ``run_date`` (a copy lives
    ``keep_days`` days; tonight's always stays); returns the files removed, relative to ``data_dir``."""
    cutoff = run_date - timedelta(days=keep_days)
    removed = []
    root = runs_dir(data_dir)
    for night in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            day = date.fromisoformat(night.name)
        except ValueError:
            continue
        if day > cutoff:
            continue
        for name in RAW_COPIES:
            path = night / name
            if path.is_file():
                path.unlink()
                removed.append(path.relative_to(data_dir).as_posix())
        if remove_parts(night):  # a sharded night that failed before its reduces removed them
            removed.append((night / SHARDS_DIR).relative_to(data_dir).as_posix())
    return removed
