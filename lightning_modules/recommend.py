"""One ranked-list contract for every recommender, neural or not (RecBole's ``full_sort_predict``).

A recommender maps padded histories to full-catalogue scores; ``top_k`` turns external item ids
into ranked external ids, and ``evaluate`` ranks held-out targets with the same scores. Baselines
and models therefore share one evaluation harness.
"""

from pathlib import Path

import polars as pl
import torch

from lightning_modules.data import EvalRows, pad_tails
from lightning_modules.metrics import SplitMetrics, mask_items
from lightning_modules.model_io import load_model
from lightning_modules.network import SequenceNetwork
from nightrec.schema import ITEM_IDX


class Recommender:
    """Base class: subclasses implement ``scores``; ``items`` maps ``item_idx`` (1..n) to ``item_id``."""

    name = "recommender"

    def __init__(self, items: pl.DataFrame, max_len: int = 50):
        self.items = items.sort(ITEM_IDX)
        self.n_items = self.items.height
        self.max_len = max_len
        self._index = dict(zip(self.items.get_column("item_id").to_list(), range(1, self.n_items + 1), strict=True))
        self._ids = [None, *self.items.get_column("item_id").to_list()]

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` right-padded item_idx histories -> ``[B, n_items + 1]`` scores (column 0 ignored)."""
        raise NotImplementedError

    def encode(self, user_histories: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """External-id histories -> padded tail tensor, lengths and every known item per user."""
        import numpy as np

        known = [[self._index[i] for i in hist if i in self._index] for hist in user_histories]
        lengths = np.array([len(k) for k in known], dtype=np.int64)
        flat = np.array([i for k in known for i in k], dtype=np.int64)
        histories, kept = pad_tails(flat, lengths, self.max_len)
        return histories, kept, known

    @torch.no_grad()
    def top_k(self, user_histories: list[list[str]], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-``k`` items per history as ``(user, rank, item_id, score)``; ``user`` is the list position.

        Unknown item ids in a history are skipped; seen items are excluded when ``exclude_seen``.
        """
        histories, lengths, known = self.encode(user_histories)
        scores = self.scores(histories, lengths).float()
        scores[:, 0] = float("-inf")
        if exclude_seen:
            rows = torch.tensor([r for r, items in enumerate(known) for _ in items], dtype=torch.long)
            cols = torch.tensor([i for items in known for i in items], dtype=torch.long)
            mask_items(scores, rows, cols)
        k = min(k, self.n_items)
        top = torch.topk(scores, k, dim=1)
        users = torch.arange(len(user_histories)).repeat_interleave(k)
        return pl.DataFrame(
            {
                "user": users.numpy(),
                "rank": torch.arange(1, k + 1).repeat(len(user_histories)).numpy(),
                "item_id": [self._ids[i] for i in top.indices.reshape(-1).tolist()],
                "score": top.values.reshape(-1).numpy(),
            }
        ).filter(pl.col("score") > float("-inf"))

    @torch.no_grad()
    def evaluate(self, rows: EvalRows, batch_size: int = 1024) -> dict[str, float]:
        """Full-ranking metrics of one split in both protocols (see ``metrics.SplitMetrics``)."""
        metrics = SplitMetrics(self.n_items)
        for idx in torch.split(torch.arange(len(rows)), batch_size):
            batch = rows[idx]
            metrics.update(self.scores(batch["history"], batch["lengths"]).float(), batch)
        return metrics.compute()


class ModelRecommender(Recommender):
    """A trained network: scores are ``SequenceNetwork.scores`` of the padded histories."""

    name = "model"

    def __init__(self, network: SequenceNetwork, items: pl.DataFrame, max_len: int = 50):
        super().__init__(items, max_len)
        self.network = network.eval()

    @classmethod
    def from_dir(cls, model_dir: Path, max_len: int = 50, served: bool = False) -> "ModelRecommender":
        """The validated weights, or with ``served`` the refitted ones that score the nightly table."""
        network, items = load_model(model_dir, served=served)
        return cls(network, items, max_len)

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.network.scores(histories, lengths)
