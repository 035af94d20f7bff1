"""The content-based recommender: a user's profile is the recency-weighted sum of the attribute
vectors of the items in their history; every item is scored by its cosine with that profile.

It answers the ranked-list contract (``nightrec.recommender``). Items sharing no attribute with
the profile score 0 and are never listed, so a history without attribute signal gets a short
(or empty) list that the caller fills from popularity.
"""

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import sparse

from nightrec.metadata.features import ItemVectors
from nightrec.recommender import USER
from nightrec.schema import ITEM_ID, RANK, SCORE

BLOCK = 2048  # users scored at a time: a block x items float32 matrix


class ContentRecommender:
    """Top-K items by cosine between a history's profile and each item's attribute vector."""

    name = "content"

    def __init__(self, vectors: ItemVectors, recency_decay: float = 0.8, candidates: Sequence[str] | None = None):
        """``candidates`` limits what is ranked (e.g. tonight's new items); default every item of ``vectors``."""
        self.vectors = vectors
        self.decay = recency_decay
        self.index = {item: i for i, item in enumerate(vectors.item_ids)}
        self.candidates = list(vectors.item_ids if candidates is None else candidates)
        self.candidate_matrix = vectors.rows(self.candidates)

    def profiles(self, user_histories: Sequence[Sequence[str]]) -> sparse.csr_matrix:
        """One row per history: sum of decay**k x the vector of the item k steps before the last."""
        rows, cols, weights = [], [], []
        for user, history in enumerate(user_histories):
            n = len(history)
            for position, item in enumerate(history):
                column = self.index.get(item)
                if column is not None:
                    rows.append(user)
                    cols.append(column)
                    weights.append(self.decay ** (n - 1 - position))
        select = sparse.csr_matrix(
            (np.asarray(weights, dtype=np.float32), (rows, cols)), shape=(len(user_histories), len(self.index))
        )
        profile = (select @ self.vectors.matrix).tocsr()
        norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        return sparse.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ profile

    def scores(self, user_histories: Sequence[Sequence[str]]) -> np.ndarray:
        """Cosine of each history's profile with each candidate: ``[users, candidates]``."""
        return np.asarray((self.profiles(user_histories) @ self.candidate_matrix.T).todense(), dtype=np.float32)

    def top_k(self, user_histories: Sequence[Sequence[str]], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-``k`` candidates per history with a positive score, best first (ties by item order)."""
        frames = []
        candidate_ids = np.asarray(self.candidates, dtype=object)
        position = {item: i for i, item in enumerate(self.candidates)}
        for start in range(0, len(user_histories), BLOCK):
            block = user_histories[start : start + BLOCK]
            scores = self.scores(block)
            if exclude_seen:
                for row, history in enumerate(block):
                    seen = [position[item] for item in history if item in position]
                    scores[row, seen] = 0.0
            take = min(k, scores.shape[1])
            if take == 0:
                continue
            top = np.argsort(-scores, axis=1, kind="stable")[:, :take]
            best = np.take_along_axis(scores, top, axis=1)
            users, ranks = np.nonzero(best > 0)
            frames.append(
                pl.DataFrame(
                    {
                        USER: (users + start).astype(np.int64),
                        RANK: (ranks + 1).astype(np.int32),
                        ITEM_ID: candidate_ids[top[users, ranks]].astype(str),
                        SCORE: best[users, ranks].astype(np.float64),
                    }
                )
            )
        empty = pl.DataFrame(schema={USER: pl.Int64, RANK: pl.Int32, ITEM_ID: pl.String, SCORE: pl.Float64})
        return pl.concat(frames) if frames else empty
