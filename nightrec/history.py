"""Per-user histories: what each user has already seen, for exclusion and cold-start decisions."""

import polars as pl

from nightrec.schema import ITEM_ID, TIMESTAMP, USER_ID

N_EVENTS = "n_events"
LAST_SEEN = "last_seen"
ITEMS = "items"


def user_histories(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per user: event count, last event time and distinct items in first-seen order."""
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    return (
        lf.sort(TIMESTAMP, maintain_order=True)
        .group_by(USER_ID)
        .agg(
            pl.len().alias(N_EVENTS),
            pl.col(TIMESTAMP).max().alias(LAST_SEEN),
            pl.col(ITEM_ID).unique(maintain_order=True).alias(ITEMS),
        )
        .sort(USER_ID)
        .collect()
    )


def seen_pairs(histories: pl.DataFrame) -> pl.DataFrame:
    """Distinct (user_id, item_id) pairs from ``user_histories`` output."""
    return histories.select(USER_ID, pl.col(ITEMS).alias(ITEM_ID)).explode(ITEM_ID)
