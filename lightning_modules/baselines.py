"""Baselines in the model's harness: most-popular and last-item co-occurrence kNN.

Both answer the ranked-list contract of ``recommend.Recommender``, so every report states how
far the model is ahead of them under identical evaluation.
"""

import numpy as np
import polars as pl
import torch

from lightning_modules.recommend import Recommender


class PopularityRecommender(Recommender):
    """Most interacted-with items in training, the same list for everyone."""

    name = "popularity"

    def __init__(self, items: pl.DataFrame, train_flat: np.ndarray, max_len: int = 50):
        super().__init__(items, max_len)
        counts = np.bincount(train_flat, minlength=self.n_items + 1).astype(np.float32)
        self.popularity = torch.from_numpy(counts)

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.popularity.expand(len(histories), -1).clone()


class ItemKNNRecommender(Recommender):
    """Next item given the last item: how often ``j`` followed ``i`` within ``window`` steps in training.

    Items that never followed the last item are ordered by popularity (a score below every
    co-occurrence), so the baseline is never handicapped by ties.
    """

    name = "item-knn"

    def __init__(
        self, items: pl.DataFrame, train_flat: np.ndarray, train_lengths: np.ndarray, window: int = 1, max_len: int = 50
    ):
        super().__init__(items, max_len)
        n = self.n_items + 1
        offsets = np.concatenate([[0], np.cumsum(train_lengths)])
        user = np.repeat(np.arange(len(train_lengths)), train_lengths)
        pos = np.arange(len(train_flat)) - offsets[user]
        keys = []
        for step in range(1, window + 1):
            ok = pos + step < train_lengths[user]
            src = np.nonzero(ok)[0]
            keys.append(train_flat[src] * n + train_flat[src + step])
        pairs, counts = np.unique(np.concatenate(keys), return_counts=True)
        indices = torch.from_numpy(np.stack([pairs // n, pairs % n]))
        self.cooc = torch.sparse_coo_tensor(
            indices, torch.from_numpy(counts.astype(np.float32)), (n, n), check_invariants=False
        ).coalesce()
        pop = np.bincount(train_flat, minlength=n).astype(np.float64)
        self.tiebreak = torch.from_numpy((pop / (pop.max() + 1.0)).astype(np.float32))

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = histories[torch.arange(len(histories)), (lengths.clamp(min=1) - 1)]
        return self.cooc.index_select(0, last).to_dense() + self.tiebreak


def last_item_knn_lists(
    items: pl.DataFrame, flat: np.ndarray, lengths: np.ndarray, events: pl.DataFrame, users: list[str], k: int
) -> pl.DataFrame:
    """The last-item kNN fitted on the sequences ``(flat, lengths)``, as published lists for ``users``:
    ``(user_id, rank, item_id, score)``, seen items excluded, each history read from ``events`` in
    time order (ties keep the input order, as in the sequences). The reference a published table
    is held against (``nightrec.evaluation.holdout``)."""
    knn = ItemKNNRecommender(items, flat, lengths)
    histories = events.sort("timestamp", maintain_order=True).group_by("user_id", maintain_order=True).agg("item_id")
    order = pl.DataFrame({"user_id": users}).join(histories, on="user_id", how="left", maintain_order="left")
    ranked = knn.top_k([h or [] for h in order.get_column("item_id").to_list()], k=k, exclude_seen=True)
    return ranked.with_columns(pl.Series("user_id", users).gather(ranked.get_column("user")))
