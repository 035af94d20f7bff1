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
    # No learned repeat offset (the neural families' history_bias): items of the history are put
    # after every other item instead, see ``scores``.
    history_weight = None

    def __init__(self, n_items: int, **settings: Any):
        super().__init__()
        self.n_items = n_items
        self.arch: dict[str, Any] = {"family": self.family, "n_items": n_items, **settings}

    @classmethod
    def too_large(cls, model_config: Any, n_items: int) -> str | None:
        """Why this family refuses a catalogue of ``n_items`` (None: it does not)."""
        return None

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> "ClosedFormNetwork":
        return cls(**{k: v for k, v in arch.items() if k != "family"})

    def variants(self) -> list["ClosedFormNetwork"]:
        """The settings to fit, best on validation kept (``lightning_modules.closed_form``); one by default."""
        return [self]

    def fit(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Fill the buffers from training sequences: item ids ``flat`` (oldest first), split by ``lengths``."""
        raise NotImplementedError

    def item_scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The family's similarity scores ``[B, n_items + 1]`` (column 0 is padding)."""
        raise NotImplementedError

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Full-catalogue scores ``[B, n_items + 1]`` of right-padded histories (column 0 is padding).

        Similarity ranks what a user has read highest of all, so items of the history are moved
        below every other item, keeping their order among themselves: CF recommends the next new
        item. The neural families learn this choice (``model.history_bias``; on MovieLens and
        Amazon it comes out strongly negative); fitted in closed form, CF takes the no-repeat side,
        which is also what the published lists do (seen items are masked there).
        """
        scores = self.item_scores(histories, lengths)
        if scores.numel() == 0:
            return scores
        rows = torch.arange(histories.shape[0], device=histories.device).unsqueeze(1).expand_as(histories)
        read = histories > 0
        rows, items = rows[read], histories[read]
        span = scores.max() - scores.min() + 1.0
        pairs = torch.unique(rows * scores.shape[1] + items)  # an item read twice moves once
        rows, items = pairs // scores.shape[1], pairs % scores.shape[1]
        scores[rows, items] -= span
        return scores


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
