"""Loading events for validation: lenient where the readers are strict.

The readers stop at the first unreadable value; validation instead keeps every row so that a
defect becomes a quarantined row with a reason. A missing required column is added as nulls
(its rule then flags every row), and a value that cannot be converted to the contract's type
becomes null with its original text kept in a ``raw_*`` column.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from nightrec.errors import InputError
from nightrec.ingest.input_files import is_parquet, resolve_files, why
from nightrec.ingest.readers import ID_AS_TEXT, detect_format, scan_events
from nightrec.ingest.runs import write_parquet_atomic
from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, REQUIRED_COLUMNS, SESSION_ID, TIMESTAMP, USER_ID, VALUE
from nightrec.timestamps import to_timestamp

RAW_TIMESTAMP = "raw_timestamp"
RAW_VALUE = "raw_value"
RAW_COLUMNS = (RAW_TIMESTAMP, RAW_VALUE)
_SOURCE_TS = "__raw_timestamp"  # the readers' name for the timestamp as read
_SOURCE_VALUE = "__raw_value"
_ROWS = "__rows"


@dataclass(frozen=True)
class LoadedEvents:
    """The events in the contract plus ``raw_*`` columns, and each source column's dtype as read."""

    events: pl.DataFrame
    source_columns: dict[str, str]
    files: list[Path]
    found: dict[Path, list[str]] = field(default_factory=dict)  # each file's own columns (nightrec layout)


def _read_raw(path: Path) -> pl.DataFrame:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        if is_parquet(path):
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=10_000, try_parse_dates=False, schema_overrides=ID_AS_TEXT)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot be read: {why(exc)}") from None


def _as_string(frame: pl.DataFrame, column: str) -> pl.Series:
    try:
        return frame.get_column(column).cast(pl.String, strict=False)
    except pl.exceptions.PolarsError:  # nested types have no string form: every value is unusable
        return pl.Series(column, [None] * frame.height, dtype=pl.String)


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast a frame holding the source columns (missing ones absent) to the contract."""
    for column, dtype in EVENT_SCHEMA.items():
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    ts_dtype = frame.schema[TIMESTAMP]
    frame = frame.with_columns(
        *(_as_string(frame, c) for c in (USER_ID, ITEM_ID, EVENT_TYPE, SESSION_ID)),
        pl.col(TIMESTAMP).alias(_SOURCE_TS),
        pl.col(VALUE).alias(_SOURCE_VALUE),
    )
    # Out of range, ambiguous or unreadable: null here, quarantined with its text as malformed_timestamp.
    parsed = to_timestamp(pl.col(_SOURCE_TS), ts_dtype)
    value_dtype = frame.schema[VALUE]
    value = pl.col(_SOURCE_VALUE).cast(pl.Float64, strict=False) if value_dtype != pl.Null else pl.lit(None)
    frame = frame.with_columns(
        parsed.cast(EVENT_SCHEMA[TIMESTAMP]).alias(TIMESTAMP), value.cast(pl.Float64).alias(VALUE)
    )
    lost = {
        RAW_TIMESTAMP: (_SOURCE_TS, TIMESTAMP, ts_dtype),
        RAW_VALUE: (_SOURCE_VALUE, VALUE, value_dtype),
    }
    raw_columns = []
    for raw, (source, parsed_col, dtype) in lost.items():
        if dtype.is_nested() or dtype == pl.Null:
            text = pl.lit(None, dtype=pl.String)
        else:
            text = pl.col(source).cast(pl.String, strict=False)
        keep = pl.col(parsed_col).is_null() & pl.col(source).is_not_null()
        text = pl.when(keep).then(text).otherwise(None).cast(pl.String)
        if raw in frame.columns:  # an ingested file: the source's text was kept at ingest
            text = pl.coalesce(pl.col(raw).cast(pl.String), text)
        raw_columns.append(text.alias(raw))
    frame = frame.with_columns(*raw_columns)
    return frame.select(*EVENT_SCHEMA, *RAW_COLUMNS)


def load_events(source: str | Path, fmt: str = "auto") -> LoadedEvents:
    """Read every file of ``source`` (a file, folder or glob) for validation.

    Files in nightrec's own layout (Parquet/CSV) are read as they are; other formats go through
    the readers' mapping first. Raises ``InputError`` only when a file cannot be read at all.
    """
    files = resolve_files(source)
    frames, source_columns, found = [], {}, {}
    for path in files:
        file_fmt = detect_format(path) if fmt == "auto" else fmt
        if file_fmt == "nightrec":
            raw = _read_raw(path)
            found[path] = raw.columns
            kept = [c for c in raw.columns if c in EVENT_SCHEMA or c in RAW_COLUMNS]
            # none of the contract's columns: every row is still counted (and quarantined as null)
            raw = raw.select(kept) if kept else pl.DataFrame({_ROWS: pl.repeat(None, raw.height, eager=True)})
        else:
            try:
                raw = scan_events(path, file_fmt).drop(TIMESTAMP).rename({_SOURCE_TS: TIMESTAMP}).collect()
            except pl.exceptions.PolarsError as exc:
                raise InputError(f"{path}: cannot be read as {file_fmt}: {why(exc)}") from None
        for column, dtype in raw.schema.items():
            if column not in RAW_COLUMNS and column != _ROWS:
                source_columns.setdefault(column, str(dtype))
        frames.append(_conform(raw))
    events = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    return LoadedEvents(events=events, source_columns=source_columns, files=files, found=found)


def explain_unusable(loaded: LoadedEvents, source: str) -> None:
    """Raise ``InputError`` naming why no run date can come from ``loaded``: no rows, or a missing
    required column (with a hint when the header looks like another separator). Called before the
    run date is taken from the data, so neither is blamed on the timestamps."""
    require_columns(loaded)
    if loaded.events.height == 0:
        raise InputError(f"{source}: no events (the input has a header and no rows)")


def require_columns(loaded: LoadedEvents) -> None:
    """Raise ``InputError`` naming every required column a file lacks (and what it has instead)."""
    for path, columns in loaded.found.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            hint = next(
                (f" (is it '{sep}'-separated? only ',' is read)" for sep in ";\t|" if sep in ",".join(columns)), ""
            )
            raise InputError(
                f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}{hint}"
            )


def ingest(
    source: str | Path, fmt: str, out: Path, protect: Callable[[pl.DataFrame], pl.DataFrame] | None = None
) -> Path:
    """Read ``source`` into ``out`` (Parquet) for the night: the contract's columns plus the text
    of every value that could not be converted, so validation quarantines that row with its
    reason instead of the whole night being refused. ``protect`` (forgotten users out, ids
    pseudonymised) runs before anything is written. A file that cannot be read at all, or that
    lacks a required column, still raises ``InputError``."""
    scan_events(source, fmt)  # names the file and the missing column before anything is read
    events = load_events(source, fmt).events
    if events.height == 0:
        raise InputError(f"{source}: no events (the input has no rows)")
    if protect is not None:
        events = protect(events)
    return write_parquet_atomic(events, out)


def from_frame(frame: pl.DataFrame) -> LoadedEvents:
    """Validate an in-memory frame as if it had been read from a file."""
    frame = frame.select([c for c in frame.columns if c in EVENT_SCHEMA])
    return LoadedEvents(events=_conform(frame), source_columns={c: str(t) for c, t in frame.schema.items()}, files=[])
