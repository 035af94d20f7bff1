"""Cold start from item attributes: content-based lists for users the model does not serve, and
new items in every list (``recommend.new_item_slots``).

Both need ``metadata.items_file``; without it nothing here runs and the table is what it was.
A user without a model list gets, in order of availability: the content-based list from the
items of their few events (``content``, filled from popularity as ``content+popularity``), their
segment's popularity (``segment_popularity``), then the global popularity (``popularity``).
"""

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.fallback.history import read_user_rows
from nightrec.fallback.popularity import GLOBAL_GROUP
from nightrec.ingest.runs import write_parquet_atomic
from nightrec.layout import ITEMS_QUARANTINE_FILE, USERS_QUARANTINE_FILE
from nightrec.metadata.content import ContentRecommender, Prior, history_weights
from nightrec.metadata.features import tfidf_vectors
from nightrec.metadata.tables import read_item_table
from nightrec.schema import (
    ITEM_ID,
    MODEL_VERSION,
    RANK,
    SCORE,
    SOURCE,
    SOURCE_CONTENT,
    SOURCE_NEW_ITEM,
    TIMESTAMP,
    USER_ID,
)


def content_version(run_date: date) -> str:
    return f"{SOURCE_CONTENT}@{run_date.isoformat()}"


@dataclass(frozen=True)
class ColdStart:
    """The night's content recommender and its new items (first seen in the last days, or never)."""

    content: ContentRecommender
    new_items: list[str]
    weight: float | None = None  # metadata.content_weight; None: auto, not chosen yet
    quarantine: pl.DataFrame | None = None  # the item table's rows set aside, with their reason
    choices: pl.DataFrame | None = None  # (user_id, item_id, score) of new items by a hybrid model


def new_item_ids(events: pl.DataFrame | pl.LazyFrame, catalogue: pl.Series, run_date: date, days: float) -> list[str]:
    """Items of the catalogue whose first event is within ``days`` before the run date, or that
    have no event yet (added to the catalogue, never seen), in catalogue order."""
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    since = datetime.combine(run_date, datetime.min.time(), tzinfo=UTC) - timedelta(days=days)
    first = lf.group_by(ITEM_ID).agg(pl.col(TIMESTAMP).min().alias("__first")).collect()
    table = pl.DataFrame({ITEM_ID: catalogue}).join(first, on=ITEM_ID, how="left", maintain_order="left")
    fresh = table.filter(pl.col("__first").is_null() | (pl.col("__first") >= since))
    return fresh.get_column(ITEM_ID).to_list()


def cold_start(config: NightrecConfig, events: pl.DataFrame | pl.LazyFrame | None, run_date: date) -> ColdStart | None:
    """The content recommender over ``metadata.items_file`` (None when unset), and the new items
    of ``events`` (the whole night's: first-seen dates need every user's events) when slots are on."""
    table = read_item_table(config.metadata)
    if table is None:
        return None
    vectors = tfidf_vectors(table, config.metadata.numeric_bins)
    new = []
    if config.recommend.new_item_slots and events is not None:
        new = new_item_ids(events, table.ids, run_date, config.recommend.new_item_days)
    content = ContentRecommender(vectors, config.metadata.recency_decay)
    weight = config.metadata.content_weight
    return ColdStart(content, new, None if weight == "auto" else weight, table.quarantine)


def with_choices(cold: ColdStart | None, choices: Path | None, users: pl.DataFrame | None = None) -> ColdStart | None:
    """``cold`` choosing new items by the served model's choices (a Parquet file of user_id,
    item_id, score), those of ``users`` only when given; ``cold`` as is without a file."""
    if cold is None or choices is None:
        return cold
    frame = pl.read_parquet(choices)
    if users is not None:
        frame = frame.join(users.select(USER_ID).unique(), on=USER_ID, how="semi")
    return replace(cold, choices=frame)


def keep_set_aside(config: NightrecConfig, cold: ColdStart | None, run_dir: Path) -> dict[str, int]:
    """Write the item and user tables' rows set aside to ``runs/<date>/items_quarantine.parquet``
    and ``users_quarantine.parquet`` (nothing is lost: rows read = rows kept + these); returns how
    many each file holds, for the tables that have any."""
    out = {}
    if cold is not None and cold.quarantine is not None and cold.quarantine.height:
        out[str(write_parquet_atomic(cold.quarantine, run_dir / ITEMS_QUARANTINE_FILE))] = cold.quarantine.height
    if config.popularity.users_file is not None:
        users = read_user_rows(config.popularity.users_file, config.popularity.segment_column)[1]
        if users.height:
            out[str(write_parquet_atomic(users, run_dir / USERS_QUARANTINE_FILE))] = users.height
    return out


def content_rows(
    events: pl.DataFrame, users: pl.DataFrame, cold: ColdStart, k: int, groups: pl.DataFrame, ranked: pl.DataFrame
) -> pl.DataFrame:
    """(user_id, item_id, score) of the content lists of ``users`` (a user_id frame), from their
    events: their popularity group's list (``groups``, ``ranked``) re-ranked by content."""
    pairs = history_weights(events.join(users, on=USER_ID, how="semi"), cold.content.decay, TIMESTAMP)
    prior = Prior(ranked, groups, GLOBAL_GROUP, cold.weight)
    return cold.content.rank(pairs, k, prior=prior).sort(USER_ID, RANK).select(USER_ID, ITEM_ID, SCORE)


# metadata.content_weight: auto chooses among these on the night's own users
CONTENT_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0)
TUNING_USERS = 2000


def tune_weight(
    cold: ColdStart, night: pl.DataFrame | pl.LazyFrame, groups: pl.DataFrame, ranked: pl.DataFrame
) -> float:
    """The ``CONTENT_WEIGHTS`` value whose content lists best rank, for up to ``TUNING_USERS`` users
    of ``night`` with three or more distinct items, the third from their first two (NDCG@10; ties
    go to the smaller weight). A night without such users keeps the middle value."""
    lf = night.lazy() if isinstance(night, pl.DataFrame) else night
    firsts = (
        lf.select(USER_ID, ITEM_ID, TIMESTAMP)
        .drop_nulls([USER_ID, ITEM_ID])
        .sort(USER_ID, TIMESTAMP, maintain_order=True)
        .unique([USER_ID, ITEM_ID], keep="first", maintain_order=True)
        .with_columns(pl.int_range(pl.len()).over(USER_ID).alias("__n"))
        .filter(pl.col("__n") < 3)
        .collect()
    )
    users = firsts.filter(pl.col("__n") == 2).select(USER_ID)
    users = users.sort(pl.col(USER_ID).hash(7)).head(TUNING_USERS)
    if users.is_empty():
        return CONTENT_WEIGHTS[len(CONTENT_WEIGHTS) // 2]
    sample = firsts.join(users, on=USER_ID, how="semi")
    history, target = sample.filter(pl.col("__n") < 2), sample.filter(pl.col("__n") == 2).select(USER_ID, ITEM_ID)
    pairs = history_weights(history, cold.content.decay, TIMESTAMP)
    gains = {}
    for weight in CONTENT_WEIGHTS:
        lists = cold.content.rank(pairs, 10, prior=Prior(ranked, groups, GLOBAL_GROUP, weight))
        hits = target.join(lists, on=[USER_ID, ITEM_ID], how="inner").get_column(RANK)
        gains[weight] = float((1.0 / (hits.cast(pl.Float64) + 1.0).log(2)).sum()) / users.height
    return max(CONTENT_WEIGHTS, key=lambda w: (gains[w], -w))


def _candidates(events: pl.DataFrame, cold: ColdStart, slots: int) -> pl.DataFrame:
    """(user_id, rank, item_id, score) of new items for every user with a history, best first."""
    if cold.choices is None:
        chooser = ContentRecommender(cold.content.vectors, cold.content.decay, candidates=cold.new_items)
        return chooser.rank(history_weights(events, chooser.decay, TIMESTAMP), slots + len(cold.new_items))
    seen = events.select(USER_ID, ITEM_ID)
    return (
        cold.choices.join(seen, on=[USER_ID, ITEM_ID], how="anti")
        .join(seen.select(USER_ID).unique(), on=USER_ID, how="semi")
        .sort([USER_ID, SCORE], descending=[False, True], maintain_order=True)
        .with_columns((pl.int_range(pl.len()).over(USER_ID) + 1).cast(pl.Int32).alias(RANK))
    )


def with_new_items(
    recs: pl.DataFrame, events: pl.DataFrame, cold: ColdStart, slots: int, run_date: date, k: int
) -> pl.DataFrame:
    """Up to ``slots`` new items at the end of each list (appended to a list shorter than ``k``,
    else in place of its last rows), best by ``cold.choices`` (the served hybrid model's scores)
    or else the content score of the user's history, unseen and not already listed; users without
    a history keep their list."""
    if not slots or not cold.new_items:
        return recs
    listed = recs.select(USER_ID, ITEM_ID)
    chosen = (
        _candidates(events, cold, slots)
        .join(listed, on=[USER_ID, ITEM_ID], how="anti")
        .sort(USER_ID, RANK)
        .group_by(USER_ID, maintain_order=True)
        .head(slots)
    )
    n_new = chosen.group_by(USER_ID).agg(pl.len().cast(pl.Int32).alias("__m"))
    sizes = recs.group_by(USER_ID).agg(pl.len().cast(pl.Int32).alias("__size"))
    kept = (
        recs.join(n_new, on=USER_ID, how="left")
        .join(sizes, on=USER_ID, how="left")
        .filter(pl.col(RANK) <= pl.min_horizontal("__size", k - pl.col("__m").fill_null(0)))
        .drop("__m", "__size")
    )
    placed = (
        chosen.join(sizes, on=USER_ID, how="inner")
        .join(n_new, on=USER_ID, how="inner")
        .with_columns(
            (pl.min_horizontal("__size", k - pl.col("__m")) + pl.int_range(1, pl.len() + 1).over(USER_ID))
            .cast(pl.Int32)
            .alias(RANK),
            pl.lit(SOURCE_NEW_ITEM).alias(SOURCE),
            pl.lit(content_version(run_date)).alias(MODEL_VERSION),
        )
    )
    columns = recs.columns
    placed = placed.with_columns(pl.lit(None).cast(recs.schema[c]).alias(c) for c in columns if c not in placed.columns)
    return pl.concat([kept, placed.select(columns).cast(recs.schema)]).sort(USER_ID, RANK)
