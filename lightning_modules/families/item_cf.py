"""Item-based collaborative filtering: similarity of items over the users who read them, and of
items over the order they were read in.

``sim(i, j) = norm(C)_ij + sequential_weight * norm(D)_ij`` where ``C_ij = |U_i & U_j|`` counts the
users who read both, ``D_ij`` the times ``j`` followed ``i`` within ``sequential_window`` steps
(``sequential_decay**(gap - 1)`` each), and ``norm(X)_ij = X_ij / (|U_i|^a |U_j|^(1 - a)) *
X_ij / (X_ij + shrinkage)``: an asymmetric cosine (``similarity_alpha`` a; 0.5 is the cosine)
with shrinkage. Each item keeps its ``neighbors`` most similar items, so the model is a sparse
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


def followers(flat: np.ndarray, lengths: np.ndarray, n: int, window: int, decay: float) -> sp.csr_matrix:
    """``D`` (n x n): ``D[i, j]`` sums ``decay**(gap - 1)`` over every time item ``j`` came ``gap``
    <= ``window`` steps after item ``i`` in a training sequence."""
    users = np.repeat(np.arange(len(lengths)), lengths)
    rows, cols, vals = [], [], []
    for gap in range(1, window + 1):
        same = users[:-gap] == users[gap:] if gap < len(flat) else np.zeros(0, dtype=bool)
        at = np.flatnonzero(same)
        rows.append(flat[at])
        cols.append(flat[at + gap])
        vals.append(np.full(at.size, decay ** (gap - 1), dtype=np.float32))
    matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    matrix.sum_duplicates()
    return matrix


def _normalised(counts: torch.Tensor, left: torch.Tensor, right: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """``counts / (left[:, None] * right[None, :]) * counts / (counts + shrinkage)``."""
    sim = counts / (left[:, None] * right[None, :]).clamp(min=1e-12)
    return sim * (counts / (counts + shrinkage).clamp(min=1e-12))


def item_neighbours(
    matrix: sp.csr_matrix,
    neighbors: int,
    shrinkage: float,
    pairs_per_chunk: int | None = None,
    alpha: float = 0.5,
    sequential: tuple[sp.csr_matrix, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(crow, col, val)`` of each item's ``neighbors`` most similar items (positive similarity only).

    ``matrix`` is the binary users x items matrix; ``sequential`` the follower counts and their
    weight. A chunk of items at a time meets every item, so memory is bounded by
    ``pairs_per_chunk`` and the kept neighbours, never ``n_items ** 2``.
    """
    by_item = matrix.T.tocsr()
    n = by_item.shape[0]
    readers = torch.from_numpy(np.diff(by_item.indptr).astype(np.float32))
    left, right = readers.pow(alpha), readers.pow(1.0 - alpha)
    k = max(1, min(neighbors, n - 1))
    step = max(1, (pairs_per_chunk or PAIRS_PER_CHUNK) // n)
    counts, cols, vals = [], [], []
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        support = torch.from_numpy((by_item[lo:hi] @ matrix).toarray().astype(np.float32))
        sim = _normalised(support, left[lo:hi], right, shrinkage)
        if sequential is not None:
            follow = torch.from_numpy(sequential[0][lo:hi].toarray().astype(np.float32))
            sim += sequential[1] * _normalised(follow, left[lo:hi], right, shrinkage)
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
        self,
        n_items: int,
        neighbors: int = 200,
        shrinkage: float = 10.0,
        recency_decay: float = 0.8,
        nnz: int = 0,
        similarity_alpha: float = 0.5,
        sequential_weight: float = 0.0,
        sequential_window: int = 1,
        sequential_decay: float = 1.0,
    ):
        super().__init__(
            n_items,
            neighbors=neighbors,
            shrinkage=shrinkage,
            recency_decay=recency_decay,
            nnz=nnz,
            similarity_alpha=similarity_alpha,
            sequential_weight=sequential_weight,
            sequential_window=sequential_window,
            sequential_decay=sequential_decay,
        )
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
        m = model_config
        network = cls(
            n_items,
            m.neighbors,
            m.shrinkage,
            m.recency_decay,
            similarity_alpha=m.similarity_alpha[0],
            sequential_weight=m.sequential_weight,
            sequential_window=m.sequential_window,
            sequential_decay=m.sequential_decay,
        )
        network.alphas = list(m.similarity_alpha)
        return network

    def variants(self) -> list["ItemCF"]:
        """This network and one per other ``model.similarity_alpha``: the fit keeps the best on validation."""
        arch = {k: v for k, v in self.arch.items() if k != "family"}
        others = [a for a in getattr(self, "alphas", []) if a != arch["similarity_alpha"]]
        return [self, *(ItemCF(**{**arch, "similarity_alpha": a}) for a in others)]

    def fit(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        arch = self.arch
        matrix = user_item_matrix(flat, lengths, self.n_items)
        sequential = None
        if arch["sequential_weight"] > 0:
            follow = followers(flat, lengths, self.n_items + 1, arch["sequential_window"], arch["sequential_decay"])
            sequential = (follow, arch["sequential_weight"])
        self.sim_crow, self.sim_col, self.sim_val = item_neighbours(
            matrix, arch["neighbors"], arch["shrinkage"], alpha=arch["similarity_alpha"], sequential=sequential
        )
        self.arch["nnz"] = len(self.sim_col)

    def item_scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows, items, weights = history_vector(histories, lengths, self.arch["recency_decay"])
        if self.sim_val.device.type != "cpu":
            return self.scattered_scores(histories.shape[0], rows, items, weights)
        # One sparse product in scipy: on CPU about 30x the scatter (12k ml-100k prefixes: 0.36 s, 10.3 s).
        shape = (histories.shape[0], self.n_items + 1)
        vectors = sp.csr_matrix((weights.numpy(), (rows.numpy(), items.numpy())), shape=shape)
        sim = sp.csr_matrix((self.sim_val.numpy(), self.sim_col.numpy(), self.sim_crow.numpy()), shape=(shape[1],) * 2)
        return torch.from_numpy((vectors @ sim).toarray())

    def scattered_scores(
        self, n_rows: int, rows: torch.Tensor, items: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """``item_scores`` on the similarity's own device (a GPU): every neighbour row added in place."""
        start = self.sim_crow[items]
        group, pos = expand_ranges(start, self.sim_crow[items + 1] - start)
        out = torch.zeros(n_rows, self.n_items + 1, device=self.sim_val.device)
        return out.index_put_((rows[group], self.sim_col[pos]), weights[group] * self.sim_val[pos], accumulate=True)
