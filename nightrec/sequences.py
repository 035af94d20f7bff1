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
_ROW, _TS, _SESSION = "__row", "__ts_us", "__session"


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


def _load(events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """The columns the build needs, in file order, with the configured event types only."""
    lf = events.lazy()
    schema = lf.collect_schema()
    missing = [c for c in KEY_COLUMNS if c not in schema]
    if missing:
        raise InputError(f"events: missing required column '{missing[0]}' for building sequences")
    if not isinstance(schema[TIMESTAMP], pl.Datetime):
        raise InputError(f"events: column '{TIMESTAMP}' must be a datetime (got {schema[TIMESTAMP]})")
    has_session = SESSION_ID in schema
    columns = [pl.col(USER_ID).cast(pl.String), pl.col(ITEM_ID).cast(pl.String), pl.col(EVENT_TYPE).cast(pl.String)]
    columns.append(pl.col(TIMESTAMP).dt.epoch("us").alias(_TS))
    if has_session:
        columns.append(pl.col(SESSION_ID).cast(pl.String))
    df = lf.select(columns).collect()
    for column, name in ((USER_ID, USER_ID), (ITEM_ID, ITEM_ID), (EVENT_TYPE, EVENT_TYPE), (_TS, TIMESTAMP)):
        nulls = df.get_column(column).null_count()
        if nulls:
            raise InputError(
                f"events: column '{name}' has {nulls} null value(s); key columns must be non-null "
                "before building sequences (validation quarantines such rows)"
            )
    dropped = {"event_type": 0, "duplicate": 0}
    df = df.with_row_index(_ROW)
    if config.event_types is not None:
        kept = df.filter(pl.col(EVENT_TYPE).is_in(config.event_types))
        dropped["event_type"] = df.height - kept.height
        df = kept
    if config.dedupe:
        kept = df.unique(subset=[USER_ID, ITEM_ID, EVENT_TYPE, _TS], keep="first", maintain_order=True)
        dropped["duplicate"] = df.height - kept.height
        df = kept
    return df, dropped


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


def _ordered(df: pl.DataFrame, config: SequenceConfig) -> tuple[pl.DataFrame, int]:
    """Sort per user by time (file order breaks ties), number sessions, collapse repeats."""
    df = df.sort([USER_IDX, _TS, _ROW])
    first = pl.col(USER_IDX) != pl.col(USER_IDX).shift(1)
    first = first.fill_null(True)
    gap = (pl.col(_TS) - pl.col(_TS).shift(1)) > int(config.session_timeout_minutes * 60_000_000)
    if SESSION_ID in df.columns:
        sid, prev_sid = pl.col(SESSION_ID), pl.col(SESSION_ID).shift(1)
        known = sid.is_not_null() & prev_sid.is_not_null()
        gap = pl.when(known).then(sid != prev_sid).otherwise(gap)
    starts = first | gap.fill_null(True)
    global_session = starts.cast(IDX_DTYPE).cum_sum()
    user_base = pl.when(first).then(global_session).forward_fill()
    df = df.with_columns((global_session - user_base).cast(IDX_DTYPE).alias(_SESSION), first.alias("__first"))
    if config.event_weights is not None:
        weights = {k: float(v) for k, v in config.event_weights.items()}
        df = df.with_columns(
            pl.col(EVENT_TYPE).replace_strict(weights, default=1.0, return_dtype=pl.Float32).alias(WEIGHTS)
        )
    collapsed = 0
    if config.collapse_repeats:
        keep = pl.col("__first") | (pl.col(ITEM_IDX) != pl.col(ITEM_IDX).shift(1))
        if WEIGHTS in df.columns:
            # A run of one item keeps its strongest signal (a view then a purchase counts as a purchase).
            run = keep.cast(pl.UInt32).cum_sum()
            df = df.with_columns(pl.col(WEIGHTS).max().over(run))
        kept = df.filter(keep)
        collapsed = df.height - kept.height
        df = kept
    return df, collapsed


def build_sequences(
    events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig, previous_vocab_dir: Path | None = None
) -> SequenceSet:
    """Build the vocabularies and the configured split from clean events in the event contract.

    ``previous_vocab_dir`` (last night's sequences or model folder) keeps every known item and
    user id unchanged and appends new ones. Raises ``InputError`` for null keys.
    """
    df, dropped = _load(events, config)
    prev_items, prev_users = read_previous_vocab(previous_vocab_dir) if previous_vocab_dir else (None, None)
    counts = df.group_by(ITEM_ID).agg(pl.len().cast(pl.Int64).alias(COUNT))
    items = build_item_vocab(counts, config.min_item_count, prev_items)
    mapped = df.join(items.select(ITEM_ID, ITEM_IDX), on=ITEM_ID, how="inner")
    dropped["min_item_count"] = df.height - mapped.height
    users = build_user_vocab(mapped.select(USER_ID), prev_users)
    mapped = mapped.join(users, on=USER_ID, how="inner")
    cutoffs = _cutoffs(mapped, config)
    ordered, dropped["repeat"] = _ordered(mapped, config)

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
        events_in=df.height + dropped["event_type"] + dropped["duplicate"],
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
