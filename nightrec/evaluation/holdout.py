"""Checking a published table against the future: hold out each user's last interaction, run the
pipeline on the rest, then rank the held-out item in the user's published list.

The last interaction follows the sequence order (timestamp, then input order for ties), so the
held-out item is the one the leave-last-out test split would have used as the target.
"""

import math

import polars as pl

from nightrec.evaluation.metrics import metrics_from_ranks
from nightrec.schema import ITEM_ID, RANK, TIMESTAMP, USER_ID

_ROW = "__row"


def hold_out_last(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(kept events, held-out (user_id, item_id))``: every user's last event by time, ties by input order."""
    numbered = events.with_row_index(_ROW)
    last = numbered.sort(USER_ID, TIMESTAMP, _ROW).group_by(USER_ID, maintain_order=True).last()
    kept = numbered.join(last.select(_ROW), on=_ROW, how="anti").sort(_ROW).drop(_ROW)
    return kept, last.select(USER_ID, ITEM_ID)


def published_metrics(recommendations: pl.DataFrame, held_out: pl.DataFrame, k: int = 10) -> dict[str, float]:
    """HR@k (= Recall@k for one target), NDCG@k and MRR@k of the held-out items in published lists.

    Every held-out user counts; a user with no published list, or whose item is not in the top
    ``k``, scores 0. Also reports how many held-out users had a list (``users_with_list``).
    """
    ranks = held_out.join(
        recommendations.select(USER_ID, ITEM_ID, RANK).filter(pl.col(RANK) <= k), on=[USER_ID, ITEM_ID], how="left"
    ).get_column(RANK)
    listed = held_out.join(recommendations.select(USER_ID).unique(), on=USER_ID, how="semi").height
    metrics = metrics_from_ranks([math.inf if r is None else r - 1 for r in ranks.to_list()], ks=(k,))
    return {
        "users": held_out.height,
        "users_with_list": listed,
        **{m: metrics[m] for m in (f"recall@{k}", f"ndcg@{k}", f"mrr@{k}")},
    }
