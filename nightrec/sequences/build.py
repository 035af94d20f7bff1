"""Clean events -> training-ready per-user sequences: ordering, sessions, vocabulary, splits.

``write_sequences`` produces the folder (``runs/<date>/sequences/``, copied beside each model):

- ``items.parquet``: ``item_id`` String, ``item_idx`` Int32 (1..n; 0 is padding), ``count`` Int64
- ``users.parquet``: ``user_id`` String, ``user_idx`` Int32 (0..n-1)
- ``train.parquet``: ``user_idx``, ``items`` List[Int32] (whole training sequence, not truncated),
  ``sessions`` List[Int32] (session number per position), ``weights`` List[Float32] if configured
- ``valid.parquet`` / ``test.parquet``: ``user_idx``, ``history`` List[Int32] (last ``max_len``
  items before the target), ``target`` Int32, ``train_events`` Int32 (the user's events before
  the training cut-off) and ``cold_target`` Boolean (no event of the target item before it), the
  evaluation slices' inputs (``nightrec.sequences.splits``)
- ``full.parquet``: ``user_idx``, ``history`` (last ``max_len`` items) for nightly scoring
- ``sequence_stats.json``

List columns are Int32, so the DataModule reads them without looping over users in Python.
"""

import json
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from nightrec.config import SequenceConfig
from nightrec.errors import InputError
from nightrec.layout import ITEMS_FILE, SEQUENCE_STATS_FILE, SEQUENCES_DIR, SPLIT_FILES, USERS_FILE, latest_earlier_run
from nightrec.schema import EVENT_TYPE, ITEM_ID, USER_ID
from nightrec.sequences.ordering import (
    CODE,
    LAST,
    SESSION,
    TS,
    UCODE,
    code_to_idx,
    drop_duplicates,
    id_codes,
    load,
    sessions_and_repeats,
    sorted_codes,
    temporal_cutoffs,
)
from nightrec.sequences.splits import (
    EVAL_SCHEMA,
    FULL_SCHEMA,
    ITEMS,
    N_BEFORE_TEST,
    N_BEFORE_VALID,
    SESSIONS,
    TRAIN_SCHEMA,
    WEIGHTS,
    SequenceSet,
    full_histories,
    leave_last_out,
    temporal,
)
from nightrec.sequences.stats import sequence_stats
from nightrec.sequences.vocab import (
    COUNT,
    FIRST_SEEN,
    ITEM_IDX,
    ITEMS_SCHEMA,
    USER_IDX,
    USERS_SCHEMA,
    build_item_vocab,
    build_user_vocab,
    read_previous_vocab,
)


@dataclass
class OrderedRows:
    """The first phase, for all events or one user shard's: coded, sorted per user by time and
    deduplicated. Everything in it is per user except the item counts, which shards sum."""

    ordered: pl.DataFrame  # UCODE, CODE, TS, ROW and the optional SESSION_ID, WEIGHTS
    item_codes: pl.DataFrame  # CODE, ITEM_ID
    user_codes: pl.DataFrame  # UCODE, USER_ID
    events_in: int
    dropped: dict[str, int]  # event_type, duplicate

    def item_counts(self) -> pl.DataFrame:
        """(item_id, count, LAST): events per item after duplicates, and the item's last event."""
        per_code = self.ordered.group_by(CODE).agg(pl.len().cast(pl.Int64).alias(COUNT), pl.col(TS).max().alias(LAST))
        return per_code.join(self.item_codes, on=CODE).select(ITEM_ID, COUNT, LAST)

    def first_seen(self) -> pl.DataFrame:
        """(user_id, first_seen): each user's first event (a duplicate never moves it)."""
        per_code = self.ordered.group_by(UCODE).agg(pl.col(TS).min().alias(FIRST_SEEN))
        return per_code.join(self.user_codes, on=UCODE).select(USER_ID, FIRST_SEEN)


@dataclass
class Vocabularies:
    """The global reduce: one item and one user numbering, and the temporal split's cut-offs."""

    items: pl.DataFrame
    users: pl.DataFrame
    cutoffs: tuple[int, int] | None
    previous: tuple[pl.DataFrame | None, pl.DataFrame | None]


def order_events(events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig) -> OrderedRows:
    """Phase one: load, code the ids once, sort per user by time, drop exact duplicates.
    Raises ``InputError`` for null keys."""
    df, filtered = load(events, config)
    ordered = sorted_codes(df)
    dropped = {"event_type": filtered, "duplicate": 0}
    if config.dedupe:
        ordered, dropped["duplicate"] = drop_duplicates(ordered, df.get_column(EVENT_TYPE))
    return OrderedRows(
        ordered=ordered,
        item_codes=id_codes(df, ITEM_ID, CODE),
        user_codes=id_codes(df, USER_ID, UCODE),
        events_in=df.height + filtered,
        dropped=dropped,
    )


def vocabularies(
    counts: pl.DataFrame, first_seen: pl.DataFrame, config: SequenceConfig, previous_vocab_dir: Path | None = None
) -> Vocabularies:
    """The reduce over every shard's ``item_counts`` and ``first_seen`` (summed and concatenated):
    ``previous_vocab_dir`` (last night's sequences or model folder) keeps every known item and
    user id unchanged and appends new ones."""
    prev_items, prev_users = read_previous_vocab(previous_vocab_dir) if previous_vocab_dir else (None, None)
    counts = counts.group_by(ITEM_ID).agg(pl.col(COUNT).sum(), pl.col(LAST).max())
    items = build_item_vocab(counts.select(ITEM_ID, COUNT), config.min_item_count, prev_items)
    users = build_user_vocab(first_seen.with_columns(pl.col(USER_ID).cast(pl.String)), prev_users)
    kept = counts.join(items.select(ITEM_ID), on=ITEM_ID, how="semi").get_column(LAST)
    cutoffs = temporal_cutoffs(int(kept.max()) if kept.len() else None, config)
    return Vocabularies(items=items, users=users, cutoffs=cutoffs, previous=(prev_items, prev_users))


def user_sequences(rows: OrderedRows, vocab: Vocabularies, config: SequenceConfig) -> tuple[pl.DataFrame, dict]:
    """Phase two, per user: items numbered by ``vocab``, sessions, repeats collapsed, one row of
    lists per user by ``user_idx``; and the rows it dropped (``min_item_count``, ``repeat``)."""
    ordered = rows.ordered
    lookup = rows.item_codes.join(vocab.items.select(ITEM_ID, ITEM_IDX), on=ITEM_ID, how="left")
    mapped = ordered.with_columns(code_to_idx(ordered.get_column(CODE), lookup, CODE, ITEM_IDX))
    mapped = mapped.filter(pl.col(ITEM_IDX) > 0)
    dropped = {"min_item_count": ordered.height - mapped.height}
    ordered, dropped["repeat"] = sessions_and_repeats(mapped, config)

    aggs = [pl.col(ITEM_IDX).alias(ITEMS), pl.col(SESSION).alias(SESSIONS)]
    if WEIGHTS in ordered.columns:
        aggs.append(pl.col(WEIGHTS))
    if vocab.cutoffs is not None:
        aggs += [
            (pl.col(TS) < vocab.cutoffs[0]).sum().cast(pl.Int64).alias(N_BEFORE_VALID),
            (pl.col(TS) < vocab.cutoffs[1]).sum().cast(pl.Int64).alias(N_BEFORE_TEST),
        ]
    seqs = ordered.group_by(UCODE, maintain_order=True).agg(aggs)
    user_idx = rows.user_codes.join(vocab.users, on=USER_ID).select(UCODE, USER_IDX)
    return seqs.join(user_idx, on=UCODE).drop(UCODE).sort(USER_IDX), dropped


def split_sequences(
    seqs: pl.DataFrame, vocab: Vocabularies, config: SequenceConfig, events_in: int, dropped: dict[str, int]
) -> SequenceSet:
    """Every user's sequence (``user_sequences`` of all shards, by ``user_idx``) into the
    configured split, the scoring histories and the statistics."""
    full = full_histories(seqs, config.max_len)
    splitter = temporal if vocab.cutoffs is not None else leave_last_out
    train, valid, test = splitter(seqs, config.max_len)
    result = SequenceSet(
        items=vocab.items,
        users=vocab.users,
        train=_conform(train, TRAIN_SCHEMA),
        valid=_conform(valid, EVAL_SCHEMA),
        test=_conform(test, EVAL_SCHEMA),
        full=_conform(full, FULL_SCHEMA),
    )
    result.stats = sequence_stats(
        result,
        seqs,
        config,
        events_in=events_in,
        dropped=dropped,
        cutoffs=[_iso(c) for c in vocab.cutoffs] if vocab.cutoffs else None,
        previous=vocab.previous,
    )
    return result


def build_sequences(
    events: pl.DataFrame | pl.LazyFrame, config: SequenceConfig, previous_vocab_dir: Path | None = None
) -> SequenceSet:
    """Build the vocabularies and the configured split from clean events in the event contract.

    The phases a sharded night runs per shard and reduces (``flows.shards``), here on all events
    at once. Strings are coded to integers once; everything after (sorting, duplicates, counts,
    sessions, lists) runs on integer columns. Raises ``InputError`` for null keys.
    """
    rows = order_events(events, config)
    vocab = vocabularies(rows.item_counts(), rows.first_seen(), config, previous_vocab_dir)
    seqs, dropped = user_sequences(rows, vocab, config)
    return split_sequences(seqs, vocab, config, rows.events_in, {**rows.dropped, **dropped})


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
    for name, file in SPLIT_FILES.items():
        getattr(seqs, name).write_parquet(tmp / file)
    (tmp / SEQUENCE_STATS_FILE).write_text(json.dumps(seqs.stats, indent=2, default=str))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def read_sequences(out_dir: Path) -> SequenceSet:
    """Read a folder written by ``write_sequences``."""
    out_dir = Path(out_dir)
    files = [ITEMS_FILE, USERS_FILE, *SPLIT_FILES.values(), SEQUENCE_STATS_FILE]
    missing = [f for f in files if not (out_dir / f).is_file()]
    if missing:
        raise InputError(f"{out_dir / missing[0]}: not found (is {out_dir} a sequences folder?)")
    frames = {name: pl.read_parquet(out_dir / file) for name, file in SPLIT_FILES.items()}
    return SequenceSet(
        items=pl.read_parquet(out_dir / ITEMS_FILE).cast(ITEMS_SCHEMA),
        users=pl.read_parquet(out_dir / USERS_FILE).cast(USERS_SCHEMA),
        stats=json.loads((out_dir / SEQUENCE_STATS_FILE).read_text()),
        **frames,
    )


def sequences_dir(run_dir: Path) -> Path:
    """``runs/<date>/sequences/`` for a run folder."""
    return Path(run_dir) / SEQUENCES_DIR


def write_run_sequences(seqs: SequenceSet, run_dir: Path) -> Path:
    """Write ``runs/<date>/sequences/`` and the report's copy ``runs/<date>/sequence_stats.json``."""
    out = write_sequences(seqs, sequences_dir(run_dir))
    (Path(run_dir) / SEQUENCE_STATS_FILE).write_text(json.dumps(seqs.stats, indent=2, default=str))
    return out


def previous_sequences_dir(runs_dir: Path, run_date: date) -> Path | None:
    """The newest ``runs/<d>/sequences/`` with ``d`` before ``run_date``: last night's vocabulary."""
    items = latest_earlier_run(runs_dir, run_date, f"{SEQUENCES_DIR}/{ITEMS_FILE}")
    return items.parent if items else None


def build_run_sequences(clean_path: Path, config: SequenceConfig, previous_vocab_dir: Path | None = None) -> Path:
    """The nightly step: ``runs/<date>/clean.parquet`` -> ``runs/<date>/sequences/`` (returned)."""
    clean_path = Path(clean_path)
    seqs = build_sequences(pl.scan_parquet(clean_path), config, previous_vocab_dir)
    return write_run_sequences(seqs, clean_path.parent)
