"""Turning whatever a source calls a timestamp into the contract's UTC datetime, or null.

A value this cannot read unambiguously becomes null (readers then name it, validation
quarantines it as ``malformed_timestamp`` with the original text kept):

- epoch numbers, integer or float, in seconds, milliseconds, microseconds or nanoseconds, told
  apart by magnitude (1e11 seconds is the year 5138, so every unit has its own range);
- text in ISO 8601 only: ``03/06/2026`` is 3 June or 6 March depending on who wrote it, so
  day-first or month-first text is refused rather than guessed;
- anything outside ``EARLIEST``..``LATEST`` (a misread unit, a sentinel year): such dates break
  every tool downstream (Python's ``datetime``, pandas' nanoseconds) long before they are useful.
"""

from datetime import UTC, date, datetime

import polars as pl

from nightrec.schema import TIMESTAMP_DTYPE

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)  # pandas' nanosecond range ends in April 2262
ACCEPTED = (
    "ISO 8601 text (e.g. 2026-03-06T14:05:00Z), a datetime, or epoch seconds/milliseconds/"
    f"microseconds/nanoseconds, between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
)
_ISO = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
# Below each limit, the factor that turns the value into microseconds.
_UNITS = ((1e11, 1e6), (1e14, 1e3), (1e17, 1.0))
_US_RANGE = (int(EARLIEST.timestamp() * 1e6), int(LATEST.timestamp() * 1e6))


def in_range(day: date) -> bool:
    return EARLIEST.date() < day < LATEST.date()


def _within(us: pl.Expr) -> pl.Expr:
    return pl.when((us >= _US_RANGE[0]) & (us < _US_RANGE[1])).then(us)


def from_epoch(raw: pl.Expr) -> pl.Expr:
    """An epoch number in s, ms, us or ns (by magnitude) as a UTC datetime; null when out of range."""
    x = raw.cast(pl.Float64)
    size = x.abs()
    us = pl.when(size < _UNITS[0][0]).then(x * _UNITS[0][1])
    for limit, factor in _UNITS[1:]:
        us = us.when(size < limit).then(x * factor)
    us = us.otherwise(x / 1e3).round()
    return pl.from_epoch(_within(us).cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")


def from_text(raw: pl.Expr) -> pl.Expr:
    """ISO 8601 text (or epoch digits) as a UTC datetime; anything else is null."""
    text = raw.cast(pl.String).str.strip_chars()
    iso = pl.when(text.str.contains(_ISO)).then(text.str.replace(",", ".", literal=True))
    parsed = iso.str.to_datetime(time_zone="UTC", strict=False).cast(TIMESTAMP_DTYPE)
    epoch = from_epoch(text.cast(pl.Float64, strict=False)).cast(TIMESTAMP_DTYPE)
    return pl.coalesce(_checked(parsed), epoch)


def _checked(ts: pl.Expr) -> pl.Expr:
    return pl.when((ts >= EARLIEST) & (ts < LATEST)).then(ts)


def to_timestamp(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """``raw`` (read with ``dtype``) as the contract's timestamp, null where it is not one."""
    if isinstance(dtype, pl.Datetime):
        utc = raw.dt.replace_time_zone("UTC") if dtype.time_zone is None else raw.dt.convert_time_zone("UTC")
        return _checked(utc.cast(TIMESTAMP_DTYPE))
    if isinstance(dtype, pl.Date):
        return _checked(raw.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    if dtype.is_numeric():
        return from_epoch(raw).cast(TIMESTAMP_DTYPE)
    if dtype == pl.Null:
        return pl.lit(None, dtype=TIMESTAMP_DTYPE)
    return from_text(raw)
