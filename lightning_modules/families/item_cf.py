"""Item-based collaborative filtering: cosine similarity of items over the users who read them.

``sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|) * support / (support + shrinkage)`` with support
``|U_i & U_j|``; each item keeps its ``neighbors`` most similar items, so the model is a sparse
``(n_items + 1) x (n_items + 1)`` CSR of at most ``neighbors`` entries a row. A history scores
``sum_h decay**(steps before the last) * sim[h]``.
"""

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from lightning_modules.data import expand_ranges
from lightning_modules.families.neighbourhood import ClosedFormNetwork, history_vector, user_item_matrix

# Co-counts are computed this many item pairs at a time (float32: 64 MiB), whatever the catalogue.
PAIRS_PER_CHUNK = 1 << 24
# Seconds of a fit per million item pairs, measured on 2 CPU cores (41,664 items: 15 s).
SECONDS_PER_MILLION_PAIRS = 15 / 41_664**2 * 1e6


def fit_seconds(n_items: int) -> float:
    """A fit's expected seconds on 2 CPU cores: it is quadratic in the catalogue."""
    return SECONDS_PER_MILLION_PAIRS * n_items**2 / 1e6


def item_neighbours(
    matrix: sp.csr_matrix, neighbors: int, shrinkage: float, pairs_per_chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crow, col, val)`` of each item's ``neighbors`` most similar items (positive similarity only).

    ``matrix`` is the binary users x items matrix; a chunk of items at a time meets every item, so
    memory is bounded by ``pairs_per_chunk`` and the kept neighbours, never ``n_items ** 2``.
    """
    by_item = matrix.T.tocsr()
    n = by_item.shape[0]
    norms = torch.from_numpy(np.sqrt(np.diff(by_item.indptr)).astype(np.float32))
    k = max(1, min(neighbors, n - 1))
    step = max(1, (pairs_per_chunk or PAIRS_PER_CHUNK) // n)
    counts, cols, vals = [], [], []
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        support = torch.from_numpy((by_item[lo:hi] @ matrix).toarray().astype(np.float32))
        sim = support / (norms[lo:hi, None] * norms[None, :]).clamp(min=1e-12)
        sim *= support / (support + shrinkage).clamp(min=1e-12)
        sim[torch.arange(hi - lo), torch.arange(lo, hi)] = 0.0  # an item is not its own neighbour
        top, idx = torch.topk(sim, k, dim=1)
        keep = top > 0
        counts.append(keep.sum(1))
        cols.append(idx[keep])
        vals.append(top[keep])
    crow = torch.zeros(n + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.cat(counts), 0)
    return crow, torch.cat(cols), torch.cat(vals)


class ItemCF(ClosedFormNetwork):
    """Item-kNN over whole histories, recent items weighing more."""

    family = "item_cf"

    def __init__(
        self, n_items: int, neighbors: int = 200, shrinkage: float = 10.0, recency_decay: float = 0.8, nnz: int = 0
    ):
        super().__init__(n_items, neighbors=neighbors, shrinkage=shrinkage, recency_decay=recency_decay, nnz=nnz)
        self.register_buffer("sim_crow", torch.zeros(n_items + 2, dtype=torch.long))
        self.register_buffer("sim_col", torch.zeros(nnz, dtype=torch.long))
        self.register_buffer("sim_val", torch.zeros(nnz))

    @classmethod
    def too_large(cls, model_config: Any, n_items: int) -> str | None:
        if n_items <= model_config.item_cf_max_items:
            return None
        return (
            f"model.item_cf_max_items: the catalogue has {n_items:,} items, more than item_cf_max_items "
            f"{model_config.item_cf_max_items:,}; the fit compares every item with every other one "
            f"({n_items:,}^2 similarities, ~{fit_seconds(n_items) / 60:.0f} min on 2 CPU cores). "
            "Raise model.item_cf_max_items if the night has the time"
        )

    @classmethod
    def from_config(cls, model_config: Any, n_items: int, max_len: int = 50) -> "ItemCF":
        return cls(n_items, model_config.neighbors, model_config.shrinkage, model_config.recency_decay)

    def fit(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        matrix = user_item_matrix(flat, lengths, self.n_items)
        self.sim_crow, self.sim_col, self.sim_val = item_neighbours(
            matrix, self.arch["neighbors"], self.arch["shrinkage"]
        )
        self.arch["nnz"] = len(self.sim_col)

    def item_scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows, items, weights = history_vector(histories, lengths, self.arch["recency_decay"])
        start = self.sim_crow[items]
        group, pos = expand_ranges(start, self.sim_crow[items + 1] - start)
        out = torch.zeros(histories.shape[0], self.n_items + 1, device=self.sim_val.device)
        return out.index_put_((rows[group], self.sim_col[pos]), weights[group] * self.sim_val[pos], accumulate=True)
