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
"""

import math
from collections.abc import Iterable, Sequence

import numpy as np

KS = (10, 20)


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


def metrics_from_ranks(ranks: Sequence[int | float], ks: Sequence[int] = KS) -> dict[str, float]:
    """``ranking_metrics`` of a list of 0-based ranks (``math.inf`` for a target that cannot be ranked)."""
    return ranking_metrics(rank_counts(ranks, max(ks)), len(ranks), ks)


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
