"""EASE (Steck, WWW 2019): a closed-form item x item linear model with a zero diagonal.

``P = (X^T X + l2 I)^-1``, ``B = I - P / diag(P)`` (so ``B_ij = -P_ij / P_jj`` off the diagonal
and ``diag(B) = 0``); a history scores ``x @ B`` with ``x`` its item indicator, each item ``k``
steps before the last weighing ``model.recency_decay ** k`` (1.0 is the paper's plain indicator;
on MovieLens-100k validation, 0.8 beat it: benchmarks/bench_cf.py).
``B`` is dense, ``n_items ** 2`` floats, so catalogues above ``model.ease_max_items`` are refused.
"""

from typing import Any

import numpy as np
import torch

from lightning_modules.families.neighbourhood import ClosedFormNetwork, history_vector, user_item_matrix

# Fitting holds the Gram matrix, its inverse and B at once.
FIT_COPIES = 3


def dense_gb(n_items: int) -> float:
    """Gigabytes of one dense float32 ``n_items x n_items`` matrix."""
    return 4 * n_items**2 / 1e9


class EASE(ClosedFormNetwork):
    """Embarrassingly shallow autoencoder; ``weights`` is ``B`` with a zero padding row and column."""

    family = "ease"

    def __init__(self, n_items: int, l2: float = 250.0, recency_decay: float = 1.0):
        super().__init__(n_items, l2=l2, recency_decay=recency_decay)
        self.register_buffer("weights", torch.zeros(n_items + 1, n_items + 1))

    @classmethod
    def too_large(cls, model_config: Any, n_items: int) -> str | None:
        if n_items <= model_config.ease_max_items:
            return None
        return (
            f"model.ease_max_items: the catalogue has {n_items:,} items, more than ease_max_items "
            f"{model_config.ease_max_items:,}; EASE's dense item x item matrix would take "
            f"{dense_gb(n_items):.1f} GB ({FIT_COPIES * dense_gb(n_items):.1f} GB while fitting). "
            "Use model.family=item_cf, or raise model.ease_max_items if the memory is there"
        )

    @classmethod
    def from_config(cls, model_config: Any, n_items: int, max_len: int = 50) -> "EASE":
        return cls(n_items, model_config.ease_l2, model_config.recency_decay)

    def fit(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        x = user_item_matrix(flat, lengths, self.n_items)[:, 1:]
        gram = torch.from_numpy((x.T @ x).toarray())  # float32, like x
        gram.diagonal().add_(self.arch["l2"])
        # X^T X + l2 I is symmetric positive definite: a Cholesky inverse costs about half of LU's.
        factor = torch.linalg.cholesky(gram)
        del gram
        p = torch.cholesky_inverse(factor)
        del factor
        p /= -torch.diagonal(p).clone()  # column j divided by -P_jj
        p.diagonal().zero_()
        self.weights.zero_()
        self.weights[1:, 1:] = p

    def item_scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows, items, weights = history_vector(histories, lengths, self.arch["recency_decay"])
        shape = (histories.shape[0], self.n_items + 1)
        x = torch.sparse_coo_tensor(
            torch.stack([rows, items]), weights, shape, device=self.weights.device, check_invariants=False
        )
        return torch.sparse.mm(x, self.weights)
