"""What the closed-form families (item_cf, user_cf, ease) share: the ``SequenceNetwork`` surface
the trainer, evaluator and scorer read, a recency-weighted history vector and the training
user x item matrix.

They are fitted once from the training sequences (``fit``), not trained by gradient descent;
their state is buffers whose sizes are known only after fitting, so ``arch`` records them and
``network_from_arch`` + ``load_state_dict`` restores a model from its folder alone.
"""

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


class ClosedFormNetwork(nn.Module):
    """Base of the closed-form families; subclasses write ``fit`` and ``scores``."""

    family = ""
    closed_form = True
    # No learned repeat offset: a history item keeps the score the model gives it.
    history_weight = None

    def __init__(self, n_items: int, **settings: Any):
        super().__init__()
        self.n_items = n_items
        self.arch: dict[str, Any] = {"family": self.family, "n_items": n_items, **settings}

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> "ClosedFormNetwork":
        return cls(**{k: v for k, v in arch.items() if k != "family"})

    def fit(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Fill the buffers from training sequences: item ids ``flat`` (oldest first), split by ``lengths``."""
        raise NotImplementedError

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Full-catalogue scores ``[B, n_items + 1]`` of right-padded histories (column 0 is padding)."""
        raise NotImplementedError


def user_item_matrix(flat: np.ndarray, lengths: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary ``users x (n_items + 1)`` CSR of the training sequences (a repeated item counts once)."""
    users = np.repeat(np.arange(len(lengths)), lengths)
    ones = np.ones(len(flat), dtype=np.float32)
    matrix = sp.csr_matrix((ones, (users, flat)), shape=(len(lengths), n_items + 1))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def history_vector(
    histories: torch.Tensor, lengths: torch.Tensor, decay: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(row, item, weight)``, one entry per distinct item of each history.

    The item ``k`` steps before the last weighs ``decay ** k``; an item read twice sums its weights.
    """
    b, width = histories.shape
    device = histories.device
    steps = (lengths.to(device).unsqueeze(1) - 1 - torch.arange(width, device=device)).clamp(min=0)
    weights = torch.pow(decay, steps.float())
    keep = histories > 0
    rows = torch.arange(b, device=device).unsqueeze(1).expand(b, width)[keep]
    span = int(histories.max()) + 1 if histories.numel() else 1
    unique, inverse = torch.unique(rows * span + histories[keep], return_inverse=True)
    summed = torch.zeros(len(unique), device=device).index_add_(0, inverse, weights[keep])
    return unique // span, unique % span, summed
