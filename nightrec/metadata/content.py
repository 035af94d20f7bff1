"""The content-based recommender: a user's profile is the recency-weighted sum of the attribute
vectors of the items in their history; every item is scored by its cosine with that profile.

It answers the ranked-list contract (``nightrec.recommender``), and ranks whole frames of
weighted (user, item) pairs for the nightly table. Items sharing no attribute with the profile
score 0 and are never listed, so a history without attribute signal gets a short (or empty) list
that the caller fills from popularity.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from nightrec.fallback.popularity import GROUP
from nightrec.metadata.features import ItemVectors
from nightrec.recommender import USER
from nightrec.schema import ITEM_ID, RANK, SCORE, USER_ID

BLOCK = 2048  # users scored at a time: a block x candidates float32 matrix
WEIGHT = "weight"
_ROW, _COL = "__row", "__col"


def history_weights(events: pl.DataFrame | pl.LazyFrame, decay: float, order: str) -> pl.DataFrame:
    """(user_id, item_id, weight) from events: the event k steps before a user's last (by
    ``order``) weighs ``decay**k``; an item seen more than once sums its weights."""
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    back = pl.int_range(pl.len()).reverse().over(USER_ID)
    return (
        lf.select(USER_ID, ITEM_ID, order)
        .drop_nulls([USER_ID, ITEM_ID])
        .sort(USER_ID, order, maintain_order=True)
        .with_columns(pl.lit(decay, pl.Float64).pow(back).alias(WEIGHT))
        .group_by(USER_ID, ITEM_ID, maintain_order=True)
        .agg(pl.col(WEIGHT).sum())
        .collect()
    )


@dataclass(frozen=True)
class Prior:
    """A popularity prior per group: ``ranked`` (GROUP, item_id, score), each group's list best
    first, and each user's group in ``groups`` (user_id, GROUP; a user absent from it takes
    ``default``). An item's prior is log(1 + score) / log(1 + the group's best score), with each
    score capped by the one above it: a segment's list is its own items, then the global items it
    lacks by their global scores, which must not outrank the segment's own."""

    ranked: pl.DataFrame
    groups: pl.DataFrame
    default: int
    weight: float

    def per_user(self, users: pl.Series, candidates: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(values [groups, candidates], the row of ``values`` for each of ``users``)."""
        names = self.ranked.get_column(GROUP).unique().sort()
        position = pl.DataFrame({GROUP: names, "__g": np.arange(names.len())})
        cells = (
            self.ranked.with_columns(pl.col(SCORE).cum_min().over(GROUP).log1p().alias("__v"))
            .with_columns(pl.col("__v") / pl.col("__v").max().over(GROUP))
            .join(position, on=GROUP)
            .join(candidates, on=ITEM_ID)
        )
        values = np.zeros((names.len() + 1, candidates.height), dtype=np.float32)
        values[cells.get_column("__g").to_numpy(), cells.get_column(_COL).to_numpy()] = cells.get_column("__v")
        fallback = position.filter(pl.col(GROUP) == self.default).get_column("__g")
        missing = fallback.item() if fallback.len() else names.len()  # the last row: no prior at all
        rows = (
            pl.DataFrame({USER_ID: users})
            .join(self.groups.select(USER_ID, GROUP), on=USER_ID, how="left", maintain_order="left")
            .join(position, on=GROUP, how="left", maintain_order="left")
            .get_column("__g")
            .fill_null(missing)
        )
        return values, rows.to_numpy()


class ContentRecommender:
    """Top-K items by cosine between a history's profile and each item's attribute vector."""

    name = "content"

    def __init__(self, vectors: ItemVectors, recency_decay: float = 0.8, candidates: Sequence[str] | None = None):
        """``candidates`` limits what is ranked (e.g. tonight's new items); default every item of ``vectors``."""
        self.vectors = vectors
        self.decay = recency_decay
        self.items = pl.DataFrame({ITEM_ID: vectors.item_ids}).with_row_index(_ROW)
        self.candidates = list(vectors.item_ids if candidates is None else candidates)
        self.candidate_index = pl.DataFrame({ITEM_ID: self.candidates}, schema={ITEM_ID: pl.String}).with_row_index(
            _COL
        )
        self.candidate_matrix = vectors.rows(self.candidates).T.tocsr()

    def profiles(self, codes: np.ndarray, pairs: pl.DataFrame, n_users: int) -> sparse.csr_matrix:
        """L2-normalised profiles: row ``codes[j]`` adds ``pairs[j].weight`` x the vector of ``pairs[j].item_id``."""
        rows = pairs.with_columns(pl.Series("__code", codes)).join(self.items, on=ITEM_ID, how="inner")
        select = sparse.csr_matrix(
            (
                rows.get_column(WEIGHT).to_numpy().astype(np.float32),
                (rows.get_column("__code").to_numpy(), rows.get_column(_ROW).to_numpy()),
            ),
            shape=(n_users, self.items.height),
        )
        profile = (select @ self.vectors.matrix).tocsr()
        norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        scale = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        return (sparse.diags(scale) @ profile).tocsr()

    def rank(self, pairs: pl.DataFrame, k: int, exclude_seen: bool = True, prior: Prior | None = None) -> pl.DataFrame:
        """Top-``k`` candidates with a positive score for every user of ``pairs`` (user_id,
        item_id, weight), as (user_id, rank, item_id, score); a user's own items are skipped.
        With a ``prior``, the score is the user's prior plus ``prior.weight`` x the cosine. A user
        none of whose items has attributes gets no rows: there is nothing to rank by."""
        users = pairs.get_column(USER_ID).unique(maintain_order=True)
        rows_prior = prior.per_user(users, self.candidate_index) if prior is not None else None
        codes = pairs.select(pl.col(USER_ID).replace_strict(users, range(users.len()), return_dtype=pl.Int64))
        codes = codes.to_series().to_numpy()
        profile = self.profiles(codes, pairs, users.len())
        signal = np.diff(profile.indptr) > 0
        seen = pairs.with_columns(pl.Series("__code", codes)).join(self.candidate_index, on=ITEM_ID, how="inner")
        seen_rows, seen_cols = seen.get_column("__code").to_numpy(), seen.get_column(_COL).to_numpy()
        frames = []
        for start in range(0, users.len(), BLOCK):
            stop = min(start + BLOCK, users.len())
            scores = np.asarray((profile[start:stop] @ self.candidate_matrix).todense(), dtype=np.float32)
            if rows_prior is not None:
                values, group = rows_prior
                scores = values[group[start:stop]] + prior.weight * scores
            scores[~signal[start:stop]] = 0.0
            if exclude_seen:
                mine = (seen_rows >= start) & (seen_rows < stop)
                scores[seen_rows[mine] - start, seen_cols[mine]] = 0.0
            frames.append(self._top(scores, k, users.slice(start, stop - start)))
        empty = pl.DataFrame(schema={USER_ID: pl.String, RANK: pl.Int32, ITEM_ID: pl.String, SCORE: pl.Float64})
        return pl.concat([empty, *frames])

    def _top(self, scores: np.ndarray, k: int, users: pl.Series) -> pl.DataFrame:
        take = min(k, scores.shape[1])
        if take == 0:
            return pl.DataFrame(schema={USER_ID: pl.String, RANK: pl.Int32, ITEM_ID: pl.String, SCORE: pl.Float64})
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < scores.shape[1] else None
        part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1)) if part is None else part
        # best first; equal scores in candidate order, so the lists are deterministic
        order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
        top = np.take_along_axis(part, order, axis=1)
        best = np.take_along_axis(scores, top, axis=1)
        rows, ranks = np.nonzero(best > 0)
        return pl.DataFrame(
            {
                USER_ID: users.gather(rows),
                RANK: (ranks + 1).astype(np.int32),
                ITEM_ID: np.asarray(self.candidates, dtype=object)[top[rows, ranks]].astype(str),
                SCORE: best[rows, ranks].astype(np.float64),
            }
        )

    def top_k(self, user_histories: Sequence[Sequence[str]], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """The ranked-list contract: histories (oldest first) in, (user, rank, item_id, score) out."""
        pairs = pl.DataFrame(
            {
                USER_ID: [str(u) for u, history in enumerate(user_histories) for _ in history],
                ITEM_ID: [item for history in user_histories for item in history],
                WEIGHT: [self.decay ** (len(h) - 1 - p) for h in user_histories for p in range(len(h))],
            },
            schema={USER_ID: pl.String, ITEM_ID: pl.String, WEIGHT: pl.Float64},
        )
        pairs = pairs.group_by(USER_ID, ITEM_ID, maintain_order=True).agg(pl.col(WEIGHT).sum())
        ranked = self.rank(pairs, k, exclude_seen)
        return ranked.select(pl.col(USER_ID).cast(pl.Int64).alias(USER), RANK, ITEM_ID, SCORE).sort(USER, RANK)
