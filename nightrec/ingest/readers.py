"""Readers: every supported input format mapped onto the event contract, lazily where possible.

``scan_events`` returns a LazyFrame with the contract's columns; ``read_events`` collects it and
turns every parse failure into an ``InputError`` naming the file, the column and the rule.
"""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nightrec.errors import InputError
from nightrec.ingest.formats import FORMATS
from nightrec.ingest.input_files import is_parquet, resolve_files, why
from nightrec.schema import (
    ADD_TO_CART,
    CLICK,
    EVENT_SCHEMA,
    EVENT_TYPE,
    ITEM_ID,
    PURCHASE,
    REQUIRED_COLUMNS,
    SESSION_ID,
    TIMESTAMP,
    USER_ID,
    VALUE,
    VIEW,
)
from nightrec.timestamps import ACCEPTED, to_timestamp

_RAW_TS = "__raw_timestamp"
# Ids are text by the contract: a CSV reader must never guess them as numbers ("007" is not "7",
# and a column that turns alphanumeric after the inference window must not refuse the file).
# Every format's id column names; names a file does not have are ignored.
ID_AS_TEXT: dict[str, pl.DataType] = {
    name: pl.String
    for name in (USER_ID, ITEM_ID, SESSION_ID, "userId", "movieId", "visitorid", "itemid", "sessionId", "itemId")
}
RETAILROCKET_EVENTS = {"view": VIEW, "addtocart": ADD_TO_CART, "transaction": PURCHASE}
# Sequence files carry no times: each user's items get increasing ones, a second apart, the last
# at this instant, so every user's latest item is equally recent (a time cutoff holds out the
# last items of everyone, and recency-weighted popularity favours no user's history).
SEQUENCE_END = datetime(2020, 1, 1, 23, 59, 59, tzinfo=UTC)


def detect_format(path: Path) -> str:
    """Name the format of one file from its name (and, for ``events.csv``, its header)."""
    name = path.name
    if name in {"u.data", "ratings.dat", "ratings.csv"}:
        return "movielens"
    if path.suffix.lower() == ".inter":
        return "recbole"
    if name == "clicks.dat":
        return "yoochoose"
    if name == "train-item-views.csv":
        return "diginetica"
    if name == "events.csv" and "visitorid" in _first_line(path):
        return "retailrocket"
    if path.suffix.lower() == ".txt":
        return "sequences"
    if is_parquet(path) or path.suffix.lower() == ".csv":
        return "nightrec"
    raise InputError(f"{path}: cannot tell the format from the file name; pass --format ({', '.join(FORMATS[1:])})")


def _first_line(path: Path) -> str:
    with path.open("rb") as fh:
        return fh.readline().decode("utf-8", errors="replace")


def _check_columns(path: Path, found: list[str], required: tuple[str, ...], fmt: str) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise InputError(
            f"{path}: missing required column '{missing[0]}' for format {fmt} "
            f"(expected {', '.join(required)}; found {', '.join(found) or 'no columns'})"
        )


def _scan_csv(path: Path, **kwargs) -> pl.LazyFrame:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    overrides = {**ID_AS_TEXT, **kwargs.pop("schema_overrides", {})}
    return pl.scan_csv(path, infer_schema_length=10_000, schema_overrides=overrides, **kwargs)


def _scan_nightrec(path: Path) -> pl.LazyFrame:
    if is_parquet(path):
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty")
        lf = pl.scan_parquet(path)
    else:
        lf = _scan_csv(path, try_parse_dates=False)
    try:
        columns = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        kind = "Parquet" if is_parquet(path) else "CSV"
        raise InputError(f"{path}: cannot be read as {kind}: {why(exc)}") from None
    _check_columns(path, columns, REQUIRED_COLUMNS, "nightrec")
    extra = [pl.col(c) for c in (SESSION_ID, VALUE) if c in columns]
    return lf.select(pl.col(USER_ID), pl.col(ITEM_ID), pl.col(EVENT_TYPE), pl.col(TIMESTAMP), *extra)


def _scan_movielens(path: Path) -> pl.LazyFrame:
    names = [USER_ID, ITEM_ID, VALUE, TIMESTAMP]
    if path.name == "u.data":
        lf = _scan_csv(path, separator="\t", has_header=False, new_columns=names)
    elif path.suffix == ".dat":  # "1::1193::5::978300760": split on ':' leaves empty columns between
        lf = _scan_csv(path, separator=":", has_header=False, infer_schema=False).select(
            pl.nth(0).alias(USER_ID),
            pl.nth(2).alias(ITEM_ID),
            pl.nth(4).alias(VALUE),
            pl.nth(6).alias(TIMESTAMP),
        )
    else:
        lf = _scan_csv(path)
        _check_columns(path, lf.collect_schema().names(), ("userId", "movieId", "rating", "timestamp"), "movielens")
        lf = lf.select(
            pl.col("userId").alias(USER_ID),
            pl.col("movieId").alias(ITEM_ID),
            pl.col("rating").alias(VALUE),
            pl.col("timestamp").alias(TIMESTAMP),
        )
    return lf.with_columns(pl.lit(CLICK).alias(EVENT_TYPE))


def _scan_recbole(path: Path) -> pl.LazyFrame:
    typed = _first_line(path).rstrip("\r\n").split("\t")  # "user_id:token": ids by their bare name
    ids = {name: pl.String for name in typed if name.split(":")[0] in ID_AS_TEXT}
    lf = _scan_csv(path, separator="\t", quote_char=None, schema_overrides=ids)
    renames = {c: c.split(":")[0] for c in lf.collect_schema().names()}
    lf = lf.rename(renames)
    _check_columns(path, list(renames.values()), (USER_ID, ITEM_ID, TIMESTAMP), "recbole")
    value = pl.col("rating") if "rating" in renames.values() else pl.lit(None, dtype=pl.Float64)
    return lf.select(
        pl.col(USER_ID), pl.col(ITEM_ID), pl.lit(CLICK).alias(EVENT_TYPE), pl.col(TIMESTAMP), value.alias(VALUE)
    )


def _scan_retailrocket(path: Path) -> pl.LazyFrame:
    lf = _scan_csv(path)
    _check_columns(path, lf.collect_schema().names(), ("timestamp", "visitorid", "event", "itemid"), "retailrocket")
    return lf.select(
        pl.col("visitorid").alias(USER_ID),
        pl.col("itemid").alias(ITEM_ID),
        pl.col("event").replace_strict(RETAILROCKET_EVENTS, default=pl.col("event")).alias(EVENT_TYPE),
        pl.col("timestamp").alias(TIMESTAMP),
    )


def _scan_yoochoose(path: Path) -> pl.LazyFrame:
    # clicks.dat has no user: each session is its own visitor.
    lf = _scan_csv(
        path,
        has_header=False,
        new_columns=[SESSION_ID, TIMESTAMP, ITEM_ID, "category"],
        schema_overrides={"category": pl.String},
    )
    return lf.select(
        pl.col(SESSION_ID).cast(pl.String).alias(USER_ID),
        pl.col(ITEM_ID),
        pl.lit(CLICK).alias(EVENT_TYPE),
        pl.col(TIMESTAMP),
        pl.col(SESSION_ID),
    )


def _scan_diginetica(path: Path) -> pl.LazyFrame:
    lf = _scan_csv(path, separator=";", null_values=["NA", ""])
    cols = ("sessionId", "userId", "itemId", "timeframe", "eventdate")
    _check_columns(path, lf.collect_schema().names(), cols, "diginetica")
    # eventdate is a day; timeframe is milliseconds since the session started within it.
    day = pl.col("eventdate").cast(pl.String).str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("ms"))
    return lf.select(
        pl.coalesce(pl.col("userId").cast(pl.String), pl.lit("s") + pl.col("sessionId").cast(pl.String)).alias(USER_ID),
        pl.col("itemId").alias(ITEM_ID),
        pl.lit(VIEW).alias(EVENT_TYPE),
        (day + pl.duration(milliseconds=pl.col("timeframe"))).alias(TIMESTAMP),
        pl.col("sessionId").cast(pl.String).alias(SESSION_ID),
    )


def _scan_sequences(path: Path) -> pl.LazyFrame:
    """``user item_1 item_2 ...`` per line, split on white space (the sequence files of SASRec and
    its successors, e.g. Amazon Sports): one purchase per item, in the line's order, a second
    apart and ending at ``SEQUENCE_END``. A line with a user and no item holds no event."""
    lines = _scan_csv(
        path, has_header=False, new_columns=["__line"], separator="\x1f", quote_char=None, schema={"__line": pl.String}
    )
    tokens = lines.select(pl.col("__line").str.extract_all(r"\S+").alias("__tokens")).with_row_index("__row")
    events = tokens.select(
        "__row", pl.col("__tokens").list.first().alias(USER_ID), pl.col("__tokens").list.slice(1).alias(ITEM_ID)
    ).explode(ITEM_ID)
    before_last = pl.len().over("__row") - 1 - pl.int_range(pl.len()).over("__row")
    return events.filter(pl.col(ITEM_ID).is_not_null()).select(
        USER_ID,
        ITEM_ID,
        pl.lit(PURCHASE).alias(EVENT_TYPE),
        (pl.lit(SEQUENCE_END) - pl.duration(seconds=before_last)).alias(TIMESTAMP),
    )


_SCANNERS = {
    "nightrec": _scan_nightrec,
    "movielens": _scan_movielens,
    "recbole": _scan_recbole,
    "retailrocket": _scan_retailrocket,
    "yoochoose": _scan_yoochoose,
    "diginetica": _scan_diginetica,
    "sequences": _scan_sequences,
}


def _timestamp_expr(dtype: pl.DataType) -> pl.Expr:
    return to_timestamp(pl.col(_RAW_TS), dtype)


def _normalize(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Cast a mapped frame to the contract's dtypes; the raw timestamp is kept for error reporting."""
    schema = lf.collect_schema()
    lf = lf.rename({TIMESTAMP: _RAW_TS})
    columns = [
        pl.col(USER_ID).cast(pl.String),
        pl.col(ITEM_ID).cast(pl.String),
        pl.col(EVENT_TYPE).cast(pl.String),
        _timestamp_expr(schema[TIMESTAMP]).cast(EVENT_SCHEMA[TIMESTAMP]).alias(TIMESTAMP),
    ]
    for name in (SESSION_ID, VALUE):
        if name in schema:
            columns.append(pl.col(name).cast(EVENT_SCHEMA[name], strict=False))
        else:
            columns.append(pl.lit(None, dtype=EVENT_SCHEMA[name]).alias(name))
    return lf.select(*columns, pl.col(_RAW_TS))


def scan_events(source: str | Path, fmt: str = "auto") -> pl.LazyFrame:
    """Lazily read events from ``source`` into the contract's columns (plus a raw-timestamp column).

    Use ``read_events`` unless you handle parse errors yourself.
    """
    if fmt not in FORMATS:
        raise InputError(f"{source}: unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    frames = []
    for path in resolve_files(source):
        file_fmt = detect_format(path) if fmt == "auto" else fmt
        try:
            frames.append(_normalize(_SCANNERS[file_fmt](path)))
        except pl.exceptions.PolarsError as exc:
            raise InputError(f"{path}: cannot be read as {file_fmt}: {why(exc)}") from None
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def _collect(lf: pl.LazyFrame, path: Path) -> pl.DataFrame:
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot be read: {why(exc)}") from None


def _collect_one(lf: pl.LazyFrame, path: Path) -> pl.DataFrame:
    df = _collect(lf, path)
    bad = df.filter(pl.col(TIMESTAMP).is_null() & pl.col(_RAW_TS).is_not_null())
    if bad.height:
        example = bad.get_column(_RAW_TS)[0]
        raise InputError(
            f"{path}: column '{TIMESTAMP}': {bad.height} value(s) are not a timestamp, e.g. {example!r} "
            f"(expected {ACCEPTED})"
        )
    return df.drop(_RAW_TS)


def read_events(source: str | Path, fmt: str = "auto") -> pl.DataFrame:
    """Read events from a file, folder or glob into a DataFrame in the event contract.

    Raises ``InputError`` naming the file and column for anything that cannot be read.
    """
    if fmt not in FORMATS:
        raise InputError(f"{source}: unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    parts = []
    for path in resolve_files(source):
        parts.append(_collect_one(scan_events(path, fmt), path))
    events = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
    if events.height == 0:
        raise InputError(f"{source}: no events (the input has no rows)")
    return events


def check_source(source: str | Path, fmt: str = "auto", sample_rows: int = 10_000) -> list[Path]:
    """Read the first rows of every input file so a bad path, format or column fails fast.

    Values are not judged here: a timestamp that is not one is validation's to quarantine (one
    bad row must not refuse the night)."""
    files = resolve_files(source)
    for path in files:
        _collect(scan_events(path, fmt).head(sample_rows), path)
    return files
