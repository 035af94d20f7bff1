"""User-based collaborative filtering: the training users nearest to a history lend it their items.

``sim(q, u) = cosine(q, r_u) * support / (support + shrinkage)``, where ``q`` is the history's
recency-weighted item vector, ``r_u`` a training user's binary item vector and support the items
they share; the ``neighbors`` most similar users add their items, each weighted by its
similarity. The training user x item matrix travels in the model as CSR buffers (by user and by
item), so a model folder scores any history on its own.
"""

from typing import Any

import numpy as np
import torch

from lightning_modules.data import expand_ranges
from lightning_modules.families.neighbourhood import ClosedFormNetwork, history_vector, user_item_matrix

# Histories are scored a chunk at a time, sized so that its history x user similarities and the
# (history, neighbour's item) pairs it gathers each stay near this many (16 MiB of float32).
PAIRS_PER_CHUNK = 1 << 22


class UserCF(ClosedFormNetwork):
    """User-kNN: similar readers' items, weighted by how similar they are."""

    family = "user_cf"

    def __init__(
        self,
        n_items: int,
        neighbors: int = 200,
        shrinkage: float = 10.0,
        recency_decay: float = 0.8,
        n_users: int = 0,
        nnz: int = 0,
    ):
        settings = {"neighbors": neighbors, "shrinkage": shrinkage, "recency_decay": recency_decay}
        super().__init__(n_items, **settings, n_users=n_users, nnz=nnz)
        self.register_buffer("user_crow", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("user_col", torch.zeros(nnz, dtype=torch.long))
        self.register_buffer("item_crow", torch.zeros(n_items + 2, dtype=torch.long))
        self.register_buffer("item_col", torch.zeros(nnz, dtype=torch.long))

    @classmethod
    def from_config(cls, model_config: Any, n_items: int, max_len: int = 50) -> "UserCF":
        return cls(n_items, model_config.neighbors, model_config.shrinkage, model_config.recency_decay)

    def fit(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        by_user = user_item_matrix(flat, lengths, self.n_items)
        by_item = by_user.T.tocsr()
        self.user_crow = torch.from_numpy(by_user.indptr.astype(np.int64))
        self.user_col = torch.from_numpy(by_user.indices.astype(np.int64))
        self.item_crow = torch.from_numpy(by_item.indptr.astype(np.int64))
        self.item_col = torch.from_numpy(by_item.indices.astype(np.int64))
        self.arch.update(n_users=by_user.shape[0], nnz=by_user.nnz)

    def item_scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows, items, weights = history_vector(histories, lengths, self.arch["recency_decay"])
        b = histories.shape[0]
        out = torch.zeros(b, self.n_items + 1, device=self.user_col.device)
        n_users = max(self.arch["n_users"], 1)
        # Per history: a similarity to every training user, then each neighbour's items (on average).
        per_row = max(n_users, self.arch["neighbors"] * self.arch["nnz"] // n_users)
        step = max(1, PAIRS_PER_CHUNK // per_row)
        # history_vector returns rows in order, so each chunk of rows is one slice of the entries.
        bounds = torch.searchsorted(rows, torch.arange(0, b + step, step, device=rows.device)).tolist()
        for chunk, lo in enumerate(range(0, b, step)):
            at = slice(bounds[chunk], bounds[chunk + 1])
            users, sims = self._neighbours(rows[at] - lo, items[at], weights[at], min(step, b - lo))
            self._add_items(out[lo : lo + len(users)], users, sims)
        return out

    def _neighbours(
        self, rows: torch.Tensor, items: torch.Tensor, weights: torch.Tensor, b: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``[b, k]`` most similar training users of ``b`` history vectors, and their similarities."""
        n_users = self.arch["n_users"]
        start = self.item_crow[items]
        group, pos = expand_ranges(start, self.item_crow[items + 1] - start)
        at = (rows[group], self.item_col[pos])
        dot = torch.zeros(b, n_users, device=self.user_col.device).index_put_(at, weights[group], accumulate=True)
        support = torch.zeros_like(dot).index_put_(at, torch.ones_like(weights[group]), accumulate=True)
        q_norm = torch.zeros(b, device=dot.device).index_add_(0, rows, weights * weights).sqrt()
        u_norm = torch.diff(self.user_crow).float().sqrt()
        sim = dot / (q_norm[:, None] * u_norm[None, :]).clamp(min=1e-12)
        sim *= support / (support + self.arch["shrinkage"]).clamp(min=1e-12)
        sims, users = torch.topk(sim, min(self.arch["neighbors"], n_users), dim=1)
        return users, sims

    def _add_items(self, out: torch.Tensor, users: torch.Tensor, sims: torch.Tensor) -> None:
        """``out[r] += sum_u sims[r, u] * r_u`` over each row's neighbours (in place)."""
        row = torch.arange(len(users), device=out.device).repeat_interleave(users.shape[1])
        users, sims = users.reshape(-1), sims.reshape(-1)
        keep = sims > 0
        row, users, sims = row[keep], users[keep], sims[keep]
        start = self.user_crow[users]
        group, pos = expand_ranges(start, self.user_crow[users + 1] - start)
        out.index_put_((row[group], self.user_col[pos]), sims[group], accumulate=True)
