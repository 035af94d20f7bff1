"""A run's working files: resolving the run date and writing them under ``runs/<date>/`` (the
night's events are ingested by ``expectations.load.ingest``, leniently)."""

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError, InputError
from nightrec.ingest.readers import scan_events
from nightrec.schema import TIMESTAMP


def require_source(config: NightrecConfig) -> str:
    if not config.events:
        raise ConfigError("no input events: pass --events PATH or set NIGHTREC_EVENTS (or 'events' in the config file)")
    return config.events


def default_run_date(config: NightrecConfig, now: datetime | None = None) -> date:
    """The day after the latest event that is not in the future (see ``run_date_after``)."""
    source = require_source(config)
    return run_date_after(scan_events(source, config.format), source, now)


def run_date_after(events: pl.DataFrame | pl.LazyFrame, source: str, now: datetime | None = None) -> date:
    """The day after the latest event at or before ``now``.

    A historical dataset such as MovieLens therefore runs as is, while stray future timestamps in
    live data neither push the run date forward nor leave the real last night empty; validation
    quarantines them as future events.
    """
    now = now or datetime.now(UTC)
    ts = pl.col(TIMESTAMP)
    latest = events.lazy().select(ts.filter(ts <= now).max()).collect().item()
    if latest is None:
        raise InputError(
            f"{source}: no event has a usable '{TIMESTAMP}' at or before {now:%Y-%m-%d %H:%M} UTC; pass --run-date"
        )
    return latest.date() + timedelta(days=1)


def write_parquet_atomic(frame: pl.DataFrame, out: Path) -> Path:
    """Write ``frame`` to ``out`` through a temporary name in the same folder, so a reader never
    sees half a file; the name is unique, so a retried task that overlaps a lost one cannot clash."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
    frame.write_parquet(tmp)
    tmp.replace(out)
    return out


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
