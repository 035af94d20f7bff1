"""Popularity: time-decayed, event-weighted item scores over a trailing window, and the
ranked-list contract every recommender answers: top-K items per user, seen items excluded."""

from datetime import UTC, date, datetime, timedelta

import polars as pl

from nightrec.config import PopularityConfig
from nightrec.schema import EVENT_TYPE, ITEM_ID, RANK, SCORE, TIMESTAMP, USER_ID

_CAND_RANK = "__cand_rank"


def popularity_scores(events: pl.DataFrame | pl.LazyFrame, run_date: date, config: PopularityConfig) -> pl.DataFrame:
    """Score items by ``sum(weight(event_type) * 0.5 ** (age_days / half_life))`` over the window.

    Items with no event in the window are absent (never recommended). Sorted best first,
    ties broken by item id so the order is deterministic.
    """
    end = datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=config.window_days)
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    age_days = (pl.lit(end) - pl.col(TIMESTAMP)).dt.total_microseconds() / 86_400e6
    weight = pl.col(EVENT_TYPE).replace_strict(config.event_weights, default=0.0, return_dtype=pl.Float64)
    return (
        lf.filter((pl.col(TIMESTAMP) >= start) & (pl.col(TIMESTAMP) < end))
        .group_by(ITEM_ID)
        .agg((weight * pl.lit(0.5).pow(age_days / config.half_life_days)).sum().alias(SCORE))
        .filter(pl.col(SCORE) > 0)
        .sort([SCORE, ITEM_ID], descending=[True, False])
        .collect()
    )


def top_k_unseen(users: pl.Series, ranked: pl.DataFrame, seen: pl.DataFrame, k: int) -> pl.DataFrame:
    """For each user, the first ``k`` items of ``ranked`` (item_id, score; best first) they have not seen.

    Returns (user_id, rank, item_id, score) with ranks 1..k, or fewer rows when a user has seen
    all but fewer than ``k`` of the ranked items. Candidates widen geometrically only for the
    users that still lack items, so cost stays near ``users * 2k`` for typical histories.
    """
    ranked = ranked.select(ITEM_ID, SCORE).with_row_index(_CAND_RANK)
    pending = pl.DataFrame({USER_ID: users.unique(maintain_order=True).cast(pl.String)})
    width, parts = 2 * k, []
    while pending.height:
        candidates = ranked.head(width)
        picked = (
            pending.join(candidates, how="cross")
            .join(seen.select(USER_ID, ITEM_ID), on=[USER_ID, ITEM_ID], how="anti")
            .sort(USER_ID, _CAND_RANK)
            .group_by(USER_ID, maintain_order=True)
            .head(k)
        )
        exhausted = width >= ranked.height
        full = picked.group_by(USER_ID).len().filter(pl.col("len") >= k).get_column(USER_ID)
        done = picked if exhausted else picked.filter(pl.col(USER_ID).is_in(full.implode()))
        parts.append(done)
        pending = pending.filter(~pl.col(USER_ID).is_in(done.get_column(USER_ID).unique().implode()))
        if exhausted:
            break
        width *= 4
    out = pl.concat(parts) if parts else pl.DataFrame(schema={USER_ID: pl.String, _CAND_RANK: pl.UInt32})
    return (
        out.sort(USER_ID, _CAND_RANK)
        .with_columns(pl.int_range(1, pl.len() + 1).over(USER_ID).cast(pl.Int32).alias(RANK))
        .select(USER_ID, RANK, ITEM_ID, SCORE)
    )
