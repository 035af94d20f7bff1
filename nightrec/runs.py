"""A run's working files: resolving the run date and ingesting events under ``runs/<date>/``."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError, InputError
from nightrec.readers import read_events, scan_events
from nightrec.schema import TIMESTAMP

EVENTS_FILE = "events.parquet"


def require_source(config: NightrecConfig) -> str:
    if not config.events:
        raise ConfigError("no input events: pass --events PATH or set NIGHTREC_EVENTS (or 'events' in the config file)")
    return config.events


def default_run_date(config: NightrecConfig, today: date | None = None) -> date:
    """The day after the latest event, but never later than tomorrow (UTC).

    A historical dataset such as MovieLens therefore runs as is, while a stray future timestamp
    in live data cannot push the run date into the future.
    """
    source = require_source(config)
    latest = scan_events(source, config.format).select(pl.col(TIMESTAMP).max()).collect().item()
    if latest is None:
        raise InputError(f"{source}: no event has a usable '{TIMESTAMP}'")
    today = today or datetime.now(UTC).date()
    return min(latest.date() + timedelta(days=1), today + timedelta(days=1))


def ingest(config: NightrecConfig, run_date: date) -> Path:
    """Read the configured source into ``runs/<date>/events.parquet`` in the event contract."""
    events = read_events(require_source(config), config.format)
    out = config.run_dir(run_date) / EVENTS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    events.write_parquet(out)
    return out


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
