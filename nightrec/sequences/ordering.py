"""Ordering and cleaning: events -> integer-coded rows sorted per user by time, with sessions.

Strings are coded to integers once; sorting, duplicate removal, sessions and repeat collapsing
then run on integer columns, which is what makes a ten-million-event build cheap.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from nightrec.config import SequenceConfig
from nightrec.errors import InputError
from nightrec.schema import EVENT_TYPE, ITEM_ID, KEY_COLUMNS, SESSION_ID, TIMESTAMP, USER_ID
from nightrec.sequences.splits import WEIGHTS
from nightrec.sequences.vocab import IDX_DTYPE, ITEM_IDX

ROW, TS, SESSION, UCODE, CODE, FIRST = "__row", "__ts_us", "__session", "__ucode", "__code", "__first"
LAST = "__last_us"  # an item's last event, for the temporal cut-offs
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def load(events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig) -> tuple[pl.DataFrame, int]:
    """The columns the build needs, in input order, with the configured event types only."""
    lf = events.lazy()
    schema = lf.collect_schema()
    missing = [c for c in KEY_COLUMNS if c not in schema]
    if missing:
        raise InputError(f"events: missing required column '{missing[0]}' for building sequences")
    if not isinstance(schema[TIMESTAMP], pl.Datetime):
        raise InputError(f"events: column '{TIMESTAMP}' must be a datetime (got {schema[TIMESTAMP]})")
    # Categorical codes the ids once, far cheaper than hashing strings in joins and sorts.
    columns = [pl.col(c).cast(pl.String).cast(pl.Categorical) for c in (USER_ID, ITEM_ID)]
    columns.append(pl.col(EVENT_TYPE).cast(pl.String))
    columns.append(pl.col(TIMESTAMP).dt.epoch("us").alias(TS))
    if SESSION_ID in schema:
        columns.append(pl.col(SESSION_ID).cast(pl.String))
    df = lf.select(columns).collect()
    for column, name in ((USER_ID, USER_ID), (ITEM_ID, ITEM_ID), (EVENT_TYPE, EVENT_TYPE), (TS, TIMESTAMP)):
        nulls = df.get_column(column).null_count()
        if nulls:
            raise InputError(
                f"events: column '{name}' has {nulls} null value(s); key columns must be non-null "
                "before building sequences (validation quarantines such rows)"
            )
    if SESSION_ID in df.columns and df.get_column(SESSION_ID).null_count() == df.height:
        df = df.drop(SESSION_ID)  # most readers fill it with nulls: the gap rule decides alone
    filtered = 0
    if config.event_types is not None:
        kept = df.filter(pl.col(EVENT_TYPE).is_in(config.event_types))
        filtered, df = df.height - kept.height, kept
    if config.event_weights is not None:
        weights = {k: float(v) for k, v in config.event_weights.items()}
        df = df.with_columns(
            pl.col(EVENT_TYPE).replace_strict(weights, default=1.0, return_dtype=pl.Float32).alias(WEIGHTS)
        )
    return df, filtered


def id_codes(df: pl.DataFrame, column: str, code: str) -> pl.DataFrame:
    """Tonight's distinct external ids in ``column`` with their integer codes."""
    distinct = df.get_column(column).unique()
    return pl.DataFrame({code: distinct.to_physical(), column: distinct.cast(pl.String)})


def code_to_idx(codes: pl.Series, lookup: pl.DataFrame, code: str, idx: str) -> pl.Series:
    """Translate codes through ``lookup`` (``code`` -> ``idx``; missing or null -> 0).

    Categorical codes are small integers, so a dense table and a gather beat a hash lookup;
    a process that has coded very many strings falls back to the hash lookup.
    """
    table_size = int(lookup.get_column(code).max() or 0) + 1
    values = lookup.get_column(idx).fill_null(0)
    if table_size > 4 * lookup.height + 1_000_000:
        return codes.replace_strict(lookup.get_column(code), values, default=0, return_dtype=IDX_DTYPE).alias(idx)
    table = np.zeros(table_size, dtype=np.int32)
    table[lookup.get_column(code).to_numpy()] = values.to_numpy()
    return pl.Series(idx, table, dtype=IDX_DTYPE).gather(codes)


def sorted_codes(df: pl.DataFrame) -> pl.DataFrame:
    """Integer-coded events sorted by user, then time, ties kept in input order.

    Event logs usually arrive in time order: then one stable sort on the user code suffices.
    Otherwise user and time are packed into one 64-bit key when they fit (a single-key sort
    is several times faster than a multi-key one), else the row number breaks ties.
    """
    extra = [c for c in (SESSION_ID, WEIGHTS) if c in df.columns]
    lf = (
        df.lazy()
        .with_row_index(ROW)
        .select(pl.col(USER_ID).to_physical().alias(UCODE), pl.col(ITEM_ID).to_physical().alias(CODE), TS, ROW, *extra)
    )
    ts = df.get_column(TS)
    if ts.is_sorted():
        return lf.sort(UCODE, maintain_order=True).collect()
    span = int(ts.max()) - int(ts.min())
    max_code = int(df.get_column(USER_ID).to_physical().max())
    ts_bits = span.bit_length()
    if ts_bits + max_code.bit_length() <= 64:
        shift = pl.lit(1 << ts_bits, dtype=pl.UInt64)
        key = pl.col(UCODE).cast(pl.UInt64) * shift + (pl.col(TS) - int(ts.min())).cast(pl.UInt64)
        return lf.sort(key, maintain_order=True).collect()
    return lf.sort([UCODE, TS, ROW]).collect()


def drop_duplicates(ordered: pl.DataFrame, event_types: pl.Series) -> tuple[pl.DataFrame, int]:
    """Drop exact duplicates (user, item, type, time), keeping the first in input order.

    Duplicates share user and time, so after sorting only runs of equal (user, time) can hold
    them; those few rows are checked, not the whole frame.
    """
    same = (pl.col(UCODE) == pl.col(UCODE).shift(1)) & (pl.col(TS) == pl.col(TS).shift(1))
    same = same.fill_null(False)
    candidates = ordered.with_row_index("__pos").filter(same | same.shift(-1).fill_null(False))
    if candidates.height == 0:
        return ordered, 0
    candidates = candidates.with_columns(event_types.gather(candidates.get_column(ROW)).alias(EVENT_TYPE))
    duplicate = ~pl.struct(UCODE, TS, CODE, EVENT_TYPE).is_first_distinct()
    positions = candidates.filter(duplicate).get_column("__pos")
    if positions.len() == 0:
        return ordered, 0
    keep = np.ones(ordered.height, dtype=bool)
    keep[positions.to_numpy()] = False
    return ordered.filter(pl.Series(keep)), positions.len()


def temporal_cutoffs(latest: int | None, config: SequenceConfig) -> tuple[int, int] | None:
    """The temporal split's (validation, test) cut-offs as epoch microseconds; ``latest`` is the
    last kept event's time (None: no event)."""
    if config.split != "temporal" or latest is None:
        return None
    # round(), not int(): 13 minutes in days times 86,400e6 is 779,999,999.99 us in floating point.
    window = round(config.temporal_window_days * 86_400_000_000)
    if config.temporal_cutoff is not None:
        test_cut = (config.temporal_cutoff - EPOCH) // timedelta(microseconds=1)
    else:
        test_cut = latest - window
    return test_cut - window, test_cut


def sessions_and_repeats(df: pl.DataFrame, config: SequenceConfig) -> tuple[pl.DataFrame, int]:
    """Number each user's sessions (0, 1, ...) and drop consecutive repeats of an item."""
    first = (pl.col(UCODE) != pl.col(UCODE).shift(1)).fill_null(True)
    gap = (pl.col(TS) - pl.col(TS).shift(1)) > round(config.session_timeout_minutes * 60_000_000)
    if SESSION_ID in df.columns:
        sid, prev_sid = pl.col(SESSION_ID), pl.col(SESSION_ID).shift(1)
        known = sid.is_not_null() & prev_sid.is_not_null()
        gap = pl.when(known).then(sid != prev_sid).otherwise(gap)
    global_session = (first | gap.fill_null(True)).cast(IDX_DTYPE).cum_sum()
    user_base = pl.when(first).then(global_session).forward_fill()
    lf = df.lazy().with_columns((global_session - user_base).cast(IDX_DTYPE).alias(SESSION), first.alias(FIRST))
    if not config.collapse_repeats:
        return lf.collect(), 0
    keep = pl.col(FIRST) | (pl.col(ITEM_IDX) != pl.col(ITEM_IDX).shift(1))
    if WEIGHTS in df.columns:
        # A run of one item keeps its strongest signal (a view then a purchase counts as a purchase).
        lf = lf.with_columns(pl.col(WEIGHTS).max().over(keep.cast(pl.UInt32).cum_sum()))
    kept = lf.filter(keep).collect()
    return kept, df.height - kept.height
