"""``sequence_stats.json``: what a sequence build saw and produced, for the run report."""

from typing import Any

import polars as pl

from nightrec.config import SequenceConfig
from nightrec.sequences.splits import ITEMS, SESSIONS, TARGET, SequenceSet

QUANTILES = {"p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99}


def distribution(values: pl.Series) -> dict[str, float | int | None]:
    """Count, min, quantiles, mean and max of a numeric series (None throughout when empty)."""
    if values.len() == 0:
        return {"count": 0, "min": None, **dict.fromkeys(QUANTILES), "mean": None, "max": None}
    out: dict[str, Any] = {"count": values.len(), "min": int(values.min())}
    for name, q in QUANTILES.items():
        out[name] = float(values.quantile(q, interpolation="nearest"))
    out["mean"] = round(float(values.mean()), 4)
    out["max"] = int(values.max())
    return out


def sequence_stats(
    result: SequenceSet,
    seqs: pl.DataFrame,
    config: SequenceConfig,
    events_in: int,
    dropped: dict[str, int],
    cutoffs: list[str] | None,
    previous: tuple[pl.DataFrame | None, pl.DataFrame | None],
) -> dict[str, Any]:
    """The statistics dict stored beside the sequences (and printed by ``nightrec sequences``)."""
    lengths = seqs.get_column(ITEMS).list.len()
    sessions = seqs.get_column(SESSIONS).list.max().fill_null(-1) + 1 if seqs.height else pl.Series([], dtype=pl.Int32)
    prev_items, prev_users = previous
    items_seen = int(result.items.filter(pl.col("count") > 0).height)
    train_lengths = result.train.get_column(ITEMS).list.len()
    return {
        "users": seqs.height,
        "items": items_seen,
        "interactions": int(lengths.sum()) if seqs.height else 0,
        "events_in": events_in,
        "events_dropped": dropped,
        "vocabulary": {
            "items": result.items.height,
            "users": result.users.height,
            "new_items": result.items.height - (prev_items.height if prev_items is not None else 0),
            "new_users": result.users.height - (prev_users.height if prev_users is not None else 0),
            "padding_idx": 0,
        },
        "sequence_length": distribution(lengths),
        "sessions": {
            "total": int(sessions.sum()) if seqs.height else 0,
            "per_user": distribution(sessions),
        },
        "split": {
            "kind": config.split,
            "cutoffs": dict(zip(("valid", "test"), cutoffs, strict=True)) if cutoffs else None,
            "train_users": result.train.height,
            "train_targets": int((train_lengths - 1).sum()) if result.train.height else 0,
            "valid_targets": result.valid.height,
            "test_targets": result.test.height,
            "single_event_users": int((lengths == 1).sum()) if seqs.height else 0,
        },
        "distinct_targets": {
            "valid": result.valid.get_column(TARGET).n_unique(),
            "test": result.test.get_column(TARGET).n_unique(),
        },
        "config": config.model_dump(mode="json"),
    }
