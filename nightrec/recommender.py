"""The ranked-list contract every recommender answers (RecBole's ``full_sort_predict``): top-K
items for these users, seen items excluded.

A request is a list of user histories (external item ids, oldest first); the answer is a frame
``(user, rank, item_id, score)`` where ``user`` is the history's position in the request, ranks
run 1..k (fewer rows when a user has seen all but fewer than k items) and, with
``exclude_seen``, no item of a user's history appears in that user's list. The neural models and
the kNN baseline (``lightning_modules.recommend.Recommender``) and the served, time-decayed
popularity (``nightrec.fallback.popularity.ServedPopularity``) all answer it; adding a model
family is adding one class, never another ranking loop.
"""

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import polars as pl

USER = "user"


@runtime_checkable
class RankedList(Protocol):
    """Anything that ranks the catalogue for a batch of user histories."""

    name: str

    def top_k(self, user_histories: Sequence[Sequence[str]], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-``k`` items per history as ``(user, rank, item_id, score)``, best first."""
        ...
