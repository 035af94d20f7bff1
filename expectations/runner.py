"""Running the checks for one night: clean and quarantine files, and the validation report."""

from datetime import date
from pathlib import Path

import polars as pl

from expectations.rules import row_rules, split_quarantine
from nightrec.config import NightrecConfig
from nightrec.errors import InputError
from nightrec.runs import write_json

CLEAN_FILE = "clean.parquet"
QUARANTINE_FILE = "quarantine.parquet"
REPORT_FILE = "validation.json"


def validate_file(events_path: Path, config: NightrecConfig, run_date: date) -> dict:
    """Split ``events_path`` into ``clean.parquet`` and ``quarantine.parquet`` beside it.

    Returns the summary also written to ``validation.json``; raises ``InputError`` when no
    clean row is left, so nothing downstream runs on an empty night.
    """
    events_path = Path(events_path)
    events = pl.read_parquet(events_path)
    split = split_quarantine(events, row_rules(config, run_date))
    out_dir = events_path.parent
    split.clean.write_parquet(out_dir / CLEAN_FILE)
    split.quarantine.write_parquet(out_dir / QUARANTINE_FILE)
    summary = {"run_date": run_date.isoformat(), **split.summary}
    write_json(out_dir / REPORT_FILE, summary)
    if split.clean.height == 0:
        raise InputError(f"{config.events}: no clean events for {run_date} ({split.quarantine.height} quarantined)")
    return summary
