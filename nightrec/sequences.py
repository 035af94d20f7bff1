"""Clean events -> training-ready per-user sequences: ordering, sessions, vocabulary, splits.

The folder ``write_sequences`` produces (``runs/<date>/sequences/``, copied beside each model):
``items.parquet``, ``users.parquet``, ``train.parquet``, ``valid.parquet``, ``test.parquet``,
``full.parquet`` and ``sequence_stats.json``; the column contract is in ``docs``/contracts and the
schemas below. Sequences are Int32 list columns, so the DataModule reads them without looping
over users in Python.
"""

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from nightrec.config import SequenceConfig
from nightrec.errors import InputError
from nightrec.schema import EVENT_TYPE, ITEM_ID, KEY_COLUMNS, SESSION_ID, TIMESTAMP, USER_ID
from nightrec.sequence_stats import sequence_stats
from nightrec.splits import (
    EVAL_SCHEMA,
    FULL_SCHEMA,
    ITEMS,
    N_BEFORE_TEST,
    N_BEFORE_VALID,
    SESSIONS,
    TRAIN_SCHEMA,
    WEIGHTS,
    full_histories,
    leave_last_out,
    temporal,
)
from nightrec.vocab import (
    COUNT,
    IDX_DTYPE,
    ITEM_IDX,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    USER_IDX,
    USERS_FILE,
    USERS_SCHEMA,
    build_item_vocab,
    build_user_vocab,
    read_previous_vocab,
)

SEQUENCES_DIR = "sequences"
STATS_FILE = "sequence_stats.json"
FRAME_FILES = {"train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet", "full": "full.parquet"}
_ROW, _TS, _SESSION, _CODE, _FIRST = "__row", "__ts_us", "__session", "__code", "__first"


@dataclass
class SequenceSet:
    """The vocabularies, the split frames and their statistics (one nightly sequence build)."""

    items: pl.DataFrame
    users: pl.DataFrame
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    full: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def _load(events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig) -> tuple[pl.DataFrame, int]:
    """The columns the build needs, in input order, with the configured event types only."""
    lf = events.lazy()
    schema = lf.collect_schema()
    missing = [c for c in KEY_COLUMNS if c not in schema]
    if missing:
        raise InputError(f"events: missing required column '{missing[0]}' for building sequences")
    if not isinstance(schema[TIMESTAMP], pl.Datetime):
        raise InputError(f"events: column '{TIMESTAMP}' must be a datetime (got {schema[TIMESTAMP]})")
    columns = [pl.col(USER_ID).cast(pl.String), pl.col(ITEM_ID).cast(pl.String), pl.col(EVENT_TYPE).cast(pl.String)]
    columns.append(pl.col(TIMESTAMP).dt.epoch("us").alias(_TS))
    if SESSION_ID in schema:
        columns.append(pl.col(SESSION_ID).cast(pl.String))
    df = lf.select(columns).collect()
    for column, name in ((USER_ID, USER_ID), (ITEM_ID, ITEM_ID), (EVENT_TYPE, EVENT_TYPE), (_TS, TIMESTAMP)):
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


def _sorted_codes(df: pl.DataFrame, users: pl.DataFrame, item_codes: pl.DataFrame) -> pl.DataFrame:
    """Integer-coded events sorted by user, then time, ties kept in input order.

    Two stable single-key sorts are cheaper than one multi-key sort, and event logs usually
    arrive in time order, which makes the first one unnecessary.
    """
    extra = [c for c in (SESSION_ID, WEIGHTS) if c in df.columns]
    lf = (
        df.lazy()
        .with_row_index(_ROW)
        .join(users.lazy(), on=USER_ID, how="left", maintain_order="left")
        .join(item_codes.lazy(), on=ITEM_ID, how="left", maintain_order="left")
        .select(USER_IDX, _CODE, _TS, _ROW, *extra)
    )
    if not df.get_column(_TS).is_sorted():
        lf = lf.sort(_TS, maintain_order=True)
    return lf.sort(USER_IDX, maintain_order=True).collect()


def _drop_duplicates(ordered: pl.DataFrame, event_types: pl.Series) -> tuple[pl.DataFrame, int]:
    """Drop exact duplicates (user, item, type, time), keeping the first in input order.

    Duplicates share user and time, so after sorting only runs of equal (user, time) can hold
    them; those few rows are checked, not the whole frame.
    """
    same = (pl.col(USER_IDX) == pl.col(USER_IDX).shift(1)) & (pl.col(_TS) == pl.col(_TS).shift(1))
    same = same.fill_null(False)
    candidates = ordered.with_row_index("__pos").filter(same | same.shift(-1).fill_null(False))
    if candidates.height == 0:
        return ordered, 0
    candidates = candidates.with_columns(event_types.gather(candidates.get_column(_ROW)).alias(EVENT_TYPE))
    duplicate = ~pl.struct(USER_IDX, _TS, _CODE, EVENT_TYPE).is_first_distinct()
    positions = candidates.filter(duplicate).get_column("__pos")
    if positions.len() == 0:
        return ordered, 0
    mask = pl.Series(values=[True] * ordered.height).scatter(positions, False)
    return ordered.filter(mask), positions.len()


def _cutoffs(df: pl.DataFrame, config: SequenceConfig) -> tuple[int, int] | None:
    """The temporal split's (validation, test) cut-offs as epoch microseconds."""
    if config.split != "temporal" or df.height == 0:
        return None
    window = int(config.temporal_window_days * 86_400_000_000)
    if config.temporal_cutoff is not None:
        test_cut = int(config.temporal_cutoff.timestamp() * 1_000_000)
    else:
        test_cut = int(df.get_column(_TS).max()) - window
    return test_cut - window, test_cut


def _sessions_and_repeats(df: pl.DataFrame, config: SequenceConfig) -> tuple[pl.DataFrame, int]:
    """Number each user's sessions (0, 1, ...) and drop consecutive repeats of an item."""
    first = (pl.col(USER_IDX) != pl.col(USER_IDX).shift(1)).fill_null(True)
    gap = (pl.col(_TS) - pl.col(_TS).shift(1)) > int(config.session_timeout_minutes * 60_000_000)
    if SESSION_ID in df.columns:
        sid, prev_sid = pl.col(SESSION_ID), pl.col(SESSION_ID).shift(1)
        known = sid.is_not_null() & prev_sid.is_not_null()
        gap = pl.when(known).then(sid != prev_sid).otherwise(gap)
    global_session = (first | gap.fill_null(True)).cast(IDX_DTYPE).cum_sum()
    user_base = pl.when(first).then(global_session).forward_fill()
    lf = df.lazy().with_columns((global_session - user_base).cast(IDX_DTYPE).alias(_SESSION), first.alias(_FIRST))
    if not config.collapse_repeats:
        return lf.collect(), 0
    keep = pl.col(_FIRST) | (pl.col(ITEM_IDX) != pl.col(ITEM_IDX).shift(1))
    if WEIGHTS in df.columns:
        # A run of one item keeps its strongest signal (a view then a purchase counts as a purchase).
        lf = lf.with_columns(pl.col(WEIGHTS).max().over(keep.cast(pl.UInt32).cum_sum()))
    kept = lf.filter(keep).collect()
    return kept, df.height - kept.height


def build_sequences(
    events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig, previous_vocab_dir: Path | None = None
) -> SequenceSet:
    """Build the vocabularies and the configured split from clean events in the event contract.

    ``previous_vocab_dir`` (last night's sequences or model folder) keeps every known item and
    user id unchanged and appends new ones. Raises ``InputError`` for null keys. Strings are
    coded to integers once; everything after (sorting, duplicates, counts, sessions, lists)
    runs on integer columns.
    """
    df, filtered = _load(events, config)
    prev_items, prev_users = read_previous_vocab(previous_vocab_dir) if previous_vocab_dir else (None, None)
    users = build_user_vocab(df.select(USER_ID), prev_users)
    item_codes = df.select(ITEM_ID).unique().with_row_index(_CODE)
    ordered = _sorted_codes(df, users, item_codes)
    dropped = {"event_type": filtered, "duplicate": 0}
    if config.dedupe:
        ordered, dropped["duplicate"] = _drop_duplicates(ordered, df.get_column(EVENT_TYPE))

    counts = ordered.group_by(_CODE).agg(pl.len().cast(pl.Int64).alias(COUNT))
    counts = counts.join(item_codes, on=_CODE).select(ITEM_ID, COUNT)
    items = build_item_vocab(counts, config.min_item_count, prev_items)
    # code -> item_idx, 0 where the item is mapped out; a gather is cheaper than a join.
    table = item_codes.join(items.select(ITEM_ID, ITEM_IDX), on=ITEM_ID, how="left").sort(_CODE)
    table = table.get_column(ITEM_IDX).fill_null(0)
    mapped = ordered.with_columns(table.gather(ordered.get_column(_CODE)).alias(ITEM_IDX)).filter(pl.col(ITEM_IDX) > 0)
    dropped["min_item_count"] = ordered.height - mapped.height
    cutoffs = _cutoffs(mapped, config)
    ordered, dropped["repeat"] = _sessions_and_repeats(mapped, config)

    aggs = [pl.col(ITEM_IDX).alias(ITEMS), pl.col(_SESSION).alias(SESSIONS)]
    if WEIGHTS in ordered.columns:
        aggs.append(pl.col(WEIGHTS))
    if cutoffs is not None:
        aggs += [
            (pl.col(_TS) < cutoffs[0]).sum().cast(pl.Int64).alias(N_BEFORE_VALID),
            (pl.col(_TS) < cutoffs[1]).sum().cast(pl.Int64).alias(N_BEFORE_TEST),
        ]
    seqs = ordered.group_by(USER_IDX, maintain_order=True).agg(aggs)
    full = full_histories(seqs, config.max_len)
    splitter = temporal if cutoffs is not None else leave_last_out
    train, valid, test = splitter(seqs, config.max_len)

    result = SequenceSet(
        items=items,
        users=users,
        train=_conform(train, TRAIN_SCHEMA),
        valid=_conform(valid, EVAL_SCHEMA),
        test=_conform(test, EVAL_SCHEMA),
        full=_conform(full, FULL_SCHEMA),
    )
    result.stats = sequence_stats(
        result,
        seqs,
        config,
        events_in=df.height + filtered,
        dropped=dropped,
        cutoffs=[_iso(c) for c in cutoffs] if cutoffs else None,
        previous=(prev_items, prev_users),
    )
    return result


def _iso(epoch_us: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(microseconds=epoch_us)).isoformat() + "+00:00"


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Cast to the contract's dtypes (empty frames included); extra aligned columns follow."""
    extra = [pl.col(c) for c in frame.columns if c not in schema]
    if frame.height == 0 and not frame.columns:
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items() if c in frame.columns] + extra)


def write_sequences(seqs: SequenceSet, out_dir: Path) -> Path:
    """Write the sequences folder, replacing any previous one only once every file is written."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seqs.items.write_parquet(tmp / ITEMS_FILE)
    seqs.users.write_parquet(tmp / USERS_FILE)
    for name, file in FRAME_FILES.items():
        getattr(seqs, name).write_parquet(tmp / file)
    (tmp / STATS_FILE).write_text(json.dumps(seqs.stats, indent=2, default=str))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def read_sequences(out_dir: Path) -> SequenceSet:
    """Read a folder written by ``write_sequences``."""
    out_dir = Path(out_dir)
    files = [ITEMS_FILE, USERS_FILE, *FRAME_FILES.values(), STATS_FILE]
    missing = [f for f in files if not (out_dir / f).is_file()]
    if missing:
        raise InputError(f"{out_dir / missing[0]}: not found (is {out_dir} a sequences folder?)")
    frames = {name: pl.read_parquet(out_dir / file) for name, file in FRAME_FILES.items()}
    return SequenceSet(
        items=pl.read_parquet(out_dir / ITEMS_FILE).cast(ITEMS_SCHEMA),
        users=pl.read_parquet(out_dir / USERS_FILE).cast(USERS_SCHEMA),
        stats=json.loads((out_dir / STATS_FILE).read_text()),
        **frames,
    )


def sequences_dir(run_dir: Path) -> Path:
    """``runs/<date>/sequences/`` for a run folder."""
    return Path(run_dir) / SEQUENCES_DIR


def write_run_sequences(seqs: SequenceSet, run_dir: Path) -> Path:
    """Write ``runs/<date>/sequences/`` and the report's copy ``runs/<date>/sequence_stats.json``."""
    out = write_sequences(seqs, sequences_dir(run_dir))
    (Path(run_dir) / STATS_FILE).write_text(json.dumps(seqs.stats, indent=2, default=str))
    return out
