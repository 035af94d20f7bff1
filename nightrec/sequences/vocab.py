"""Stable vocabularies: external ids <-> contiguous internal ids that never move between nights.

Items are numbered 1..n (0 is the padding row of every embedding table); users 0..n-1. Given the
previous night's vocabulary, known ids keep their numbers (also when absent tonight) and new ones
are appended, so a warm-started model's embedding rows still mean the same items.
"""

from pathlib import Path

import polars as pl

from nightrec.errors import InputError
from nightrec.layout import ITEMS_FILE, USERS_FILE
from nightrec.schema import IDX_DTYPE, ITEM_ID, ITEM_IDX, USER_ID, USER_IDX

COUNT = "count"

ITEMS_SCHEMA = {ITEM_ID: pl.String, ITEM_IDX: IDX_DTYPE, COUNT: pl.Int64}
USERS_SCHEMA = {USER_ID: pl.String, USER_IDX: IDX_DTYPE}


FIRST_SEEN = "first_seen"


def _extend(previous: pl.DataFrame, fresh: pl.DataFrame, key: str, idx: str, first: int) -> pl.DataFrame:
    """Append ``fresh`` keys missing from ``previous`` after its highest id, in ``fresh``'s order."""
    start = int(previous.get_column(idx).max()) + 1 if previous.height else first
    new = fresh.join(previous.select(key), on=key, how="anti", maintain_order="left")
    new = new.with_columns((pl.int_range(pl.len(), dtype=IDX_DTYPE) + start).alias(idx))
    return pl.concat([previous.select(key, idx), new.select(key, idx)])


def build_item_vocab(counts: pl.DataFrame, min_item_count: int, previous: pl.DataFrame | None = None) -> pl.DataFrame:
    """``items.parquet``: ``item_id``, ``item_idx`` (1..n), ``count`` (tonight's events).

    ``counts`` has ``item_id`` and ``count``. New items below ``min_item_count`` are mapped out;
    known items stay whatever their count. New items are numbered by descending count, then id,
    so the order is deterministic whatever order the events came in.
    """
    previous = _empty_items() if previous is None else previous
    fresh = counts.filter(pl.col(COUNT) >= min_item_count).sort([COUNT, ITEM_ID], descending=[True, False])
    vocab = _extend(previous, fresh, ITEM_ID, ITEM_IDX, first=1)
    vocab = vocab.join(counts, on=ITEM_ID, how="left", maintain_order="left")
    return vocab.with_columns(pl.col(COUNT).fill_null(0)).select([pl.col(c).cast(t) for c, t in ITEMS_SCHEMA.items()])


def build_user_vocab(user_ids: pl.DataFrame, previous: pl.DataFrame | None = None) -> pl.DataFrame:
    """``users.parquet``: ``user_id``, ``user_idx`` (0..n-1); new users appended in order of
    ``first_seen`` (their first event, when the frame has it), then id. Numbering by first event
    keeps training independent of what the ids are: the same events with pseudonymised ids train
    the same model and publish the same lists.

    Every user with an event of a configured type gets an id, also one whose items were all
    mapped out by ``min_item_count`` (such a user has no row in ``full.parquet``).
    """
    previous = pl.DataFrame(schema=USERS_SCHEMA) if previous is None else previous
    order = [c for c in (FIRST_SEEN, USER_ID) if c in user_ids.columns]
    fresh = user_ids.unique(USER_ID).sort(order).select(USER_ID)
    vocab = _extend(previous, fresh, USER_ID, USER_IDX, first=0)
    return vocab.select([pl.col(c).cast(t) for c, t in USERS_SCHEMA.items()])


def _empty_items() -> pl.DataFrame:
    return pl.DataFrame(schema=ITEMS_SCHEMA)


def _read_checked(path: Path, schema: dict[str, pl.DataType], idx: str, first: int) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot be read as a vocabulary: {str(exc).splitlines()[0]}") from None
    missing = [c for c in schema if c not in frame.columns and c != COUNT]
    if missing:
        raise InputError(f"{path}: vocabulary is missing column '{missing[0]}'")
    frame = frame.select([pl.col(c).cast(schema[c]) for c in schema if c in frame.columns])
    key = next(iter(schema))
    ids = frame.get_column(idx)
    if frame.height and (ids.n_unique() != frame.height or ids.min() != first or ids.max() != first + frame.height - 1):
        raise InputError(f"{path}: column '{idx}' must hold contiguous ids {first}..{first + frame.height - 1}")
    if frame.get_column(key).n_unique() != frame.height or frame.get_column(key).null_count():
        raise InputError(f"{path}: column '{key}' must hold unique, non-null ids")
    return frame.sort(idx)


def read_previous_vocab(vocab_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The previous night's item vocabulary (required) and user vocabulary (if the folder has one).

    A model folder holds only ``items.parquet``; a sequences folder holds both.
    """
    vocab_dir = Path(vocab_dir)
    items_path = vocab_dir / ITEMS_FILE
    if not items_path.is_file():
        raise InputError(f"{items_path}: previous vocabulary not found")
    items = _read_checked(items_path, ITEMS_SCHEMA, ITEM_IDX, first=1)
    users_path = vocab_dir / USERS_FILE
    users = _read_checked(users_path, USERS_SCHEMA, USER_IDX, first=0) if users_path.is_file() else None
    return items, users
