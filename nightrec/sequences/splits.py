"""Leak-free evaluation splits over per-user sequences held as Polars list columns.

Both splits take one row per user (``user_idx``, ``items`` and the aligned per-position lists)
and return the train / valid / test / full frames of the sequences contract. Every operation is
a list expression, so no Python loop runs over users.

Each validation and test row also says what the evaluation slices need, decided here where the
training cut-off is: ``train_events``, the user's number of events before the cut-off, and
``cold_target``, whether the target item has no event before the cut-off from any user. Both
count the kept events (after duplicates, ``min_item_count`` and repeat collapsing); an item mapped
out by ``min_item_count`` has no index, so it is never a target at all.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from nightrec.sequences.vocab import IDX_DTYPE, USER_IDX

ITEMS = "items"
SESSIONS = "sessions"
WEIGHTS = "weights"
HISTORY = "history"
TARGET = "target"
TRAIN_EVENTS = "train_events"
COLD_TARGET = "cold_target"
# Per-user prefix counts the temporal split needs (computed before the lists are built).
N_BEFORE_VALID = "n_before_valid"
N_BEFORE_TEST = "n_before_test"

TRAIN_SCHEMA = {USER_IDX: IDX_DTYPE, ITEMS: pl.List(IDX_DTYPE), SESSIONS: pl.List(IDX_DTYPE)}
EVAL_SCHEMA = {
    USER_IDX: IDX_DTYPE,
    HISTORY: pl.List(IDX_DTYPE),
    TARGET: IDX_DTYPE,
    TRAIN_EVENTS: IDX_DTYPE,
    COLD_TARGET: pl.Boolean,
}
FULL_SCHEMA = {USER_IDX: IDX_DTYPE, HISTORY: pl.List(IDX_DTYPE)}


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


def _train(seqs: pl.DataFrame, length: pl.Expr) -> pl.DataFrame:
    """Each user's first ``length`` positions; users left with fewer than two have no target."""
    aligned = [c for c in (ITEMS, SESSIONS, WEIGHTS) if c in seqs.columns]
    return (
        seqs.select(pl.col(USER_IDX), length.alias("__n"), *aligned)
        .filter(pl.col("__n") >= 2)
        .select(pl.col(USER_IDX), *[pl.col(c).list.head(pl.col("__n")) for c in aligned])
    )


def _targets(seqs: pl.DataFrame, position: pl.Expr, train_len: pl.Expr, max_len: int) -> pl.DataFrame:
    """The item at ``position`` as the target, the up-to-``max_len`` items before it as history,
    and the user's ``train_len`` as ``train_events``."""
    items = pl.col(ITEMS)
    return (
        seqs.select(pl.col(USER_IDX), items, position.alias("__p"), train_len.alias(TRAIN_EVENTS))
        .filter(pl.col("__p").is_not_null() & (pl.col("__p") >= 1))
        .select(
            pl.col(USER_IDX),
            items.list.head(pl.col("__p")).list.tail(max_len).alias(HISTORY),
            items.list.get(pl.col("__p")).cast(IDX_DTYPE).alias(TARGET),
            pl.col(TRAIN_EVENTS).cast(IDX_DTYPE),
        )
    )


def _split(
    seqs: pl.DataFrame, train_len: pl.Expr, valid_at: pl.Expr, test_at: pl.Expr, max_len: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Train on each user's first ``train_len`` events; targets at ``valid_at`` and ``test_at``.

    A target is cold when its item is among no user's first ``train_len`` events. Those include
    the one event of a user too short for a training sequence: that item was seen before the
    cut-off, even though no training window holds it.
    """
    trained = seqs.select(pl.col(ITEMS).list.head(train_len)).get_column(ITEMS).explode().drop_nulls().unique()
    cold = (~pl.col(TARGET).is_in(trained.cast(IDX_DTYPE).implode())).alias(COLD_TARGET)
    valid = _targets(seqs, valid_at, train_len, max_len).with_columns(cold)
    test = _targets(seqs, test_at, train_len, max_len).with_columns(cold)
    return _train(seqs, train_len), valid, test


def slice_columns(frame: pl.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(train_events, cold_target)`` of a validation or test frame; ``None`` for a column that a
    folder written before the evaluation slices lacks."""
    return tuple(frame.get_column(c).to_numpy() if c in frame.columns else None for c in (TRAIN_EVENTS, COLD_TARGET))


def full_histories(seqs: pl.DataFrame, max_len: int) -> pl.DataFrame:
    """Every user's last ``max_len`` items, the input for nightly scoring."""
    return seqs.select(pl.col(USER_IDX), pl.col(ITEMS).list.tail(max_len).alias(HISTORY))


def leave_last_out(seqs: pl.DataFrame, max_len: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """RecBole's ``LS: valid_and_test`` with ``TO`` order: test = last, valid = second to last.

    As in RecBole, a user holds out at most ``n - 1`` items: with two events the last is the
    test target and there is no validation target; with one event nothing is held out. The
    test history includes the validation item. A user's training events are the ``n - held out``
    positions before the targets (one for a user with two or three events, who has no training
    sequence), and a cold target is an item that only ever appears in held-out positions.
    """
    n = pl.col(ITEMS).list.len()
    held_out = pl.min_horizontal(n - 1, pl.lit(2)).clip(lower_bound=0)
    return _split(seqs, n - held_out, pl.when(n >= 3).then(n - 2), pl.when(n >= 2).then(n - 1), max_len)


def temporal(seqs: pl.DataFrame, max_len: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A global cut-off: train on events before the validation cut-off, evaluate the next items.

    ``seqs`` carries ``n_before_valid`` and ``n_before_test`` (how many of the user's events fall
    before each cut-off). The validation target is the user's first event in the validation
    window, the test target the first event at or after the test cut-off; each history is
    everything before its target, so no event after a cut-off is ever trained on. A user's training
    events are those before the validation cut-off, for the test rows too (the tested model was
    trained on them), and a cold target is an item first seen at or after that cut-off.
    """
    n = pl.col(ITEMS).list.len()
    before_valid, before_test = pl.col(N_BEFORE_VALID), pl.col(N_BEFORE_TEST)
    valid_at = pl.when(before_test > before_valid).then(before_valid)
    return _split(seqs, before_valid, valid_at, pl.when(n > before_test).then(before_test), max_len)
