"""The one rank-to-metric function: Recall@K (= HR@K with one target), NDCG@K, MRR@K, coverage@K.

Every evaluator in nightrec reduces its ranking to the same thing, the number of targets found at
each 0-based rank below the largest cut-off plus the number of users, and calls
``ranking_metrics``: training validation and test (``lightning_modules.metrics``), the promotion
gate (``nightrec.evaluation.gate`` and ``lightning_modules.evaluate``), the hold-out check of a
published table (``nightrec.evaluation.holdout``) and the benchmarks. Counts are integers, so
shards summed across processes give exactly one process's numbers.

The tie rule lives with the ranker, not here: a target's rank is the number of *other* items
scoring at least as high, so a tie counts against the target and a constant scorer never looks
good (``rank_against``).

The slices live here too, so every evaluator cuts the same users (``slice_masks``): by the user's
number of training events (``train_events`` of the splits) the activity slices ``short``,
``medium``, ``long`` and the ``cold_users`` (one or two events), and by the target the
``cold_items`` (``cold_target``: an item with no event before the training cut-off).
"""

import math
from collections.abc import Iterable, Sequence

import numpy as np

KS = (10, 20)
# (name, low, high): users with low <= training events < high. They overlap: a cold user is short too.
SLICES = (("short", 0, 20), ("medium", 20, 100), ("long", 100, None), ("cold_users", 1, 3))
COLD_ITEMS = "cold_items"


def rank_counts(ranks: Iterable[int | float], max_k: int) -> list[int]:
    """How many 0-based ``ranks`` fall on each rank ``0..max_k - 1`` (a miss is any rank past the cut)."""
    counts = [0] * max_k
    for rank in ranks:
        if rank < max_k:
            counts[int(rank)] += 1
    return counts


def ranking_metrics(counts: Sequence[int], users: int, ks: Sequence[int] = KS, prefix: str = "") -> dict[str, float]:
    """``users``, ``recall@K``, ``ndcg@K`` and ``mrr@K`` for each K in ``ks`` from per-rank hit counts.

    ``counts[r]`` is the number of targets ranked ``r`` (0-based) for ``r < max(ks)``; every one of
    the ``users`` counts in the denominator, so a user whose target missed scores 0.
    """
    out: dict[str, float] = {f"{prefix}users": users}
    denom = max(users, 1)
    for k in ks:
        hits = list(counts[:k])
        out[f"{prefix}recall@{k}"] = sum(hits) / denom
        out[f"{prefix}ndcg@{k}"] = sum(c / math.log2(r + 2) for r, c in enumerate(hits)) / denom
        out[f"{prefix}mrr@{k}"] = sum(c / (r + 1) for r, c in enumerate(hits)) / denom
    return out


def slice_names(slices: Sequence[tuple] = SLICES) -> list[str]:
    """The slices' names in the order of ``slice_masks``: the user slices, then ``cold_items``."""
    return [name for name, _, _ in slices] + [COLD_ITEMS]


def slice_masks(
    train_events: np.ndarray, cold_target: np.ndarray | None = None, slices: Sequence[tuple] = SLICES
) -> dict[str, np.ndarray]:
    """Which rows fall in each slice of ``slice_names``: by the user's training events, and
    ``cold_items`` by ``cold_target`` (no row when it is not known)."""
    events = np.asarray(train_events)
    masks = {name: (events >= low) & (events < high if high is not None else True) for name, low, high in slices}
    masks[COLD_ITEMS] = np.zeros(len(events), bool) if cold_target is None else np.asarray(cold_target, bool)
    return masks


def slice_metrics(counts: Sequence[int], rows: int, ks: Sequence[int], name: str) -> dict[str, float]:
    """``ranking_metrics`` of one slice under ``<name>/``; ``cold_items`` counts ``targets``."""
    out = ranking_metrics(counts, rows, ks, f"{name}/")
    if name == COLD_ITEMS:  # a slice of targets, not of users (one target per row either way)
        out[f"{name}/targets"] = out.pop(f"{name}/users")
    return out


def metrics_from_ranks(
    ranks: Sequence[int | float],
    ks: Sequence[int] = KS,
    train_events: np.ndarray | None = None,
    cold_target: np.ndarray | None = None,
) -> dict[str, float]:
    """``ranking_metrics`` of a list of 0-based ranks (``math.inf`` for a target that cannot be ranked);
    with ``train_events`` (and ``cold_target``) aligned to ``ranks``, every slice's too."""
    out = ranking_metrics(rank_counts(ranks, max(ks)), len(ranks), ks)
    if train_events is not None:
        ranked = np.asarray(ranks, dtype=float)
        for name, rows in slice_masks(train_events, cold_target).items():
            out |= slice_metrics(rank_counts(ranked[rows], max(ks)), int(rows.sum()), ks, name)
    return out


def coverage(shown_items: int, n_items: int) -> float:
    """Share of the catalogue that appears in at least one top-K list."""
    return shown_items / n_items if n_items else 0.0


def rank_against(item_scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target under one score per item shared by every user (popularity).

    ``item_scores[i]`` scores item ``i``; a target's rank is the number of other items scoring at
    least as high (ties count against the target).
    """
    ordered = np.sort(item_scores)
    at_least = len(ordered) - np.searchsorted(ordered, item_scores[targets], side="left")
    return at_least - 1
