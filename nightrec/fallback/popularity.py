"""Popularity: time-decayed, event-weighted item scores over a trailing window, optionally per
user segment, and the list cold users are served as a recommender of the ranked-list contract
(``nightrec.recommender``): top-K items per user, seen items excluded."""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from nightrec.config import PopularityConfig
from nightrec.recommender import USER
from nightrec.schema import EVENT_TYPE, ITEM_ID, RANK, SCORE, TIMESTAMP, USER_ID

GROUP = "__group"
_CAND_RANK = "__cand_rank"
GLOBAL_GROUP = 0


def _window(events: pl.DataFrame | pl.LazyFrame, run_date: date, config: PopularityConfig) -> pl.LazyFrame:
    """Events of the trailing window with their decayed weight in column ``SCORE``."""
    end = datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=config.window_days)
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    age_days = (pl.lit(end) - pl.col(TIMESTAMP)).dt.total_microseconds() / 86_400e6
    weight = pl.col(EVENT_TYPE).replace_strict(config.event_weights, default=0.0, return_dtype=pl.Float64)
    return lf.filter((pl.col(TIMESTAMP) >= start) & (pl.col(TIMESTAMP) < end)).with_columns(
        (weight * pl.lit(0.5).pow(age_days / config.half_life_days)).alias(SCORE)
    )


def popularity_scores(events: pl.DataFrame | pl.LazyFrame, run_date: date, config: PopularityConfig) -> pl.DataFrame:
    """Score items by ``sum(weight(event_type) * 0.5 ** (age_days / half_life))`` over the window.

    Items with no event in the window are absent (never recommended). Sorted best first,
    ties broken by item id so the order is deterministic.
    """
    return (
        _window(events, run_date, config)
        .group_by(ITEM_ID)
        .agg(pl.col(SCORE).sum())
        .filter(pl.col(SCORE) > 0)
        .sort([SCORE, ITEM_ID], descending=[True, False])
        .collect()
    )


def segment_groups(users: pl.DataFrame, segment_column: str, active: pl.Series, min_users: int) -> pl.DataFrame:
    """Map each user of the user table to a popularity group: its segment's number when the
    segment has at least ``min_users`` users active in the window, else ``GLOBAL_GROUP``."""
    seg = users.select(USER_ID, pl.col(segment_column).cast(pl.String).alias(segment_column))
    sizes = (
        seg.filter(pl.col(USER_ID).is_in(active.implode()) & pl.col(segment_column).is_not_null())
        .group_by(segment_column)
        .agg(pl.col(USER_ID).n_unique().alias("n"))
        .filter(pl.col("n") >= min_users)
        .sort(segment_column)
        .with_row_index(GROUP, offset=GLOBAL_GROUP + 1)
        .select(segment_column, pl.col(GROUP).cast(pl.Int64))
    )
    return (
        seg.join(sizes, on=segment_column, how="left")
        .with_columns(pl.col(GROUP).fill_null(GLOBAL_GROUP))
        .select(USER_ID, segment_column, GROUP)
    )


def grouped_rankings(
    events: pl.DataFrame | pl.LazyFrame,
    run_date: date,
    config: PopularityConfig,
    groups: pl.DataFrame | None,
    global_ranked: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Candidate lists per popularity group: (GROUP, item_id, score), best first within a group.

    Group 0 is the global list (``global_ranked``: ``popularity_scores`` of the same events,
    computed here when None). A segment's list is its own items by segment popularity, then
    the global items it lacks (the back-up when a segment's catalogue is thin), by global score.
    """
    if global_ranked is None:
        global_ranked = popularity_scores(events, run_date, config)
    parts = [global_ranked.select(pl.lit(GLOBAL_GROUP, pl.Int64).alias(GROUP), ITEM_ID, SCORE)]
    if groups is not None and groups.filter(pl.col(GROUP) != GLOBAL_GROUP).height:
        own = (
            _window(events, run_date, config)
            .join(groups.lazy().filter(pl.col(GROUP) != GLOBAL_GROUP).select(USER_ID, GROUP), on=USER_ID)
            .group_by(GROUP, ITEM_ID)
            .agg(pl.col(SCORE).sum())
            .filter(pl.col(SCORE) > 0)
            .sort([GROUP, SCORE, ITEM_ID], descending=[False, True, False])
            .collect()
        )
        for group in own.get_column(GROUP).unique().sort():
            mine = own.filter(pl.col(GROUP) == group)
            backup = global_ranked.join(mine.select(ITEM_ID), on=ITEM_ID, how="anti")
            parts += [mine, backup.select(pl.lit(group, pl.Int64).alias(GROUP), ITEM_ID, SCORE)]
    return pl.concat(parts)


def top_k_unseen(users: pl.Series | pl.DataFrame, ranked: pl.DataFrame, seen: pl.DataFrame, k: int) -> pl.DataFrame:
    """For each user, the first ``k`` items of their candidate list they have not seen.

    ``users`` is a Series of ids (everyone shares ``ranked``: item_id, score, best first) or a
    frame (user_id, GROUP) with ``ranked`` holding one list per GROUP. Returns (user_id, rank,
    item_id, score) with ranks 1..k, fewer rows when a user has seen all but fewer than ``k``
    candidates. Candidates widen geometrically only for the users that still lack items, so the
    cost stays near ``users * 2k`` for typical histories.
    """
    if isinstance(users, pl.Series):
        users = pl.DataFrame({USER_ID: users.cast(pl.String)}).with_columns(pl.lit(GLOBAL_GROUP, pl.Int64).alias(GROUP))
    if GROUP not in ranked.columns:
        ranked = ranked.with_columns(pl.lit(GLOBAL_GROUP, pl.Int64).alias(GROUP))
    ranked = ranked.select(GROUP, ITEM_ID, SCORE).with_columns(pl.int_range(pl.len()).over(GROUP).alias(_CAND_RANK))
    longest = ranked.group_by(GROUP).len().get_column("len").max() or 0
    pending = users.select(USER_ID, GROUP).unique(USER_ID, keep="first", maintain_order=True)
    seen = seen.select(USER_ID, ITEM_ID)
    width, parts = 2 * k, []
    while pending.height:
        picked = (
            pending.join(ranked.filter(pl.col(_CAND_RANK) < width), on=GROUP)
            .join(seen, on=[USER_ID, ITEM_ID], how="anti")
            .sort(USER_ID, _CAND_RANK)
            .group_by(USER_ID, maintain_order=True)
            .head(k)
        )
        exhausted = width >= longest
        full = picked.group_by(USER_ID).len().filter(pl.col("len") >= k).get_column(USER_ID)
        done = picked if exhausted else picked.filter(pl.col(USER_ID).is_in(full.implode()))
        parts.append(done)
        pending = pending.filter(~pl.col(USER_ID).is_in(done.get_column(USER_ID).unique().implode()))
        if exhausted:
            break
        width *= 4
    schema = {USER_ID: pl.String, _CAND_RANK: pl.Int64, ITEM_ID: pl.String, SCORE: pl.Float64}
    out = (
        pl.concat([p.select(pl.col(c).cast(t) for c, t in schema.items()) for p in parts])
        if parts
        else pl.DataFrame(schema=schema)
    )
    return (
        out.sort(USER_ID, _CAND_RANK)
        .with_columns(pl.int_range(1, pl.len() + 1).over(USER_ID).cast(pl.Int32).alias(RANK))
        .select(USER_ID, RANK, ITEM_ID, SCORE)
    )


class ServedPopularity:
    """The global time-decayed popularity list that users without a model list are served."""

    name = "popularity"

    def __init__(self, events: pl.DataFrame | pl.LazyFrame, run_date: date, config: PopularityConfig):
        self.ranked = popularity_scores(events, run_date, config)

    def item_scores(self, item_ids: Sequence[str]) -> np.ndarray:
        """One score per id of ``item_ids`` (0 for an item outside the window), in that order."""
        score_of = dict(
            zip(self.ranked.get_column(ITEM_ID).to_list(), self.ranked.get_column(SCORE).to_list(), strict=True)
        )
        return np.array([score_of.get(item, 0.0) for item in item_ids], dtype=np.float64)

    def top_k(self, user_histories: Sequence[Sequence[str]], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        """The ranked-list contract: the first ``k`` items of the list each user has not seen."""
        users = pl.Series(USER_ID, [str(i) for i in range(len(user_histories))], dtype=pl.String)
        items = pl.Series(ITEM_ID, [list(map(str, h)) for h in user_histories], dtype=pl.List(pl.String))
        seen = pl.DataFrame([users, items]).explode(ITEM_ID).drop_nulls(ITEM_ID)
        if not exclude_seen:
            seen = seen.clear()
        return (
            top_k_unseen(users, self.ranked, seen, k)
            .select(pl.col(USER_ID).cast(pl.Int64).alias(USER), RANK, ITEM_ID, SCORE)
            .sort(USER, RANK)
        )
