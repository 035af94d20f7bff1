"""What GX sees: the events with indicator columns, and the source's columns with their kinds."""

import polars as pl

from expectations.load import RAW_TIMESTAMP, RAW_VALUE
from expectations.rules import INDICATOR_RULES
from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, SESSION_ID, TIMESTAMP, USER_ID, VALUE

_ID_KINDS = ("string", "integer")
ALLOWED_KINDS = {
    USER_ID: _ID_KINDS,
    ITEM_ID: _ID_KINDS,
    EVENT_TYPE: ("string",),
    TIMESTAMP: ("datetime", "date", "integer", "float", "string"),
    SESSION_ID: _ID_KINDS,
    VALUE: ("integer", "float"),
}


_HTML = ("&", "<", ">", '"', "'")
_ESCAPED = ("&amp;", "&lt;", "&gt;", "&quot;", "&#x27;")


def as_html(text: pl.Expr) -> pl.Expr:
    """Text escaped for HTML. GX writes unexpected values into Data Docs unescaped, and operators
    open those pages: GX only ever sees escaped text (and escaped value sets, ``html_text``), so a
    hostile id is shown, never run. Escaping is one-to-one, so every count stays the same."""
    return text.cast(pl.String).str.replace_many(_HTML, _ESCAPED)


def html_text(value: str) -> str:
    """``as_html`` for one configured value (a value set GX compares the escaped column with)."""
    for raw, escaped in zip(_HTML, _ESCAPED, strict=True):
        value = value.replace(raw, escaped)
    return value


def _kind(dtype: str) -> str:
    for prefix, kind in (("String", "string"), ("Int", "integer"), ("UInt", "integer"), ("Float", "float")):
        if dtype.startswith(prefix):
            return kind
    return {"Date": "date", "Boolean": "boolean", "Null": "null"}.get(dtype.split("(")[0], dtype.split("(")[0].lower())


def columns_frame(source_columns: dict[str, str]) -> pl.DataFrame:
    """The source's contract columns and the kind of each: what the column-level checks see."""
    known = [c for c in source_columns if c in EVENT_SCHEMA]
    kinds = ["datetime" if source_columns[c].startswith("Datetime") else _kind(source_columns[c]) for c in known]
    return pl.DataFrame({"column": known, "kind": kinds}, schema={"column": pl.String, "kind": pl.String})


def events_frame(events: pl.DataFrame, flags: pl.DataFrame, flag_names: dict[str, str]) -> pl.DataFrame:
    """What GX sees of the rows: the contract's columns, the raw-text columns and the indicator columns."""
    indicators = [pl.col(flag_names[name]).alias(name) for name in INDICATOR_RULES if name in flag_names]
    # Text as categoricals: GX filters the whole frame for each sample of failing rows, and moving
    # integer codes is much cheaper than moving strings; the set check becomes a category lookup.
    texts = (USER_ID, ITEM_ID, EVENT_TYPE, SESSION_ID, RAW_TIMESTAMP, RAW_VALUE)
    text = [as_html(pl.col(c)).cast(pl.Categorical) for c in texts]
    frame = events.select(*text, pl.col(TIMESTAMP), pl.col(VALUE))
    return pl.concat([frame, flags.select(indicators)], how="horizontal")
