"""Assembling tonight's table: every user gets a ranked list with its source and model version."""

from datetime import date

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.history import seen_pairs, user_histories
from nightrec.popularity import popularity_scores, top_k_unseen
from nightrec.publish import conform
from nightrec.schema import MODEL_VERSION, RUN_DATE, SOURCE, SOURCE_POPULARITY, USER_ID


def popularity_version(run_date: date) -> str:
    return f"popularity@{run_date.isoformat()}"


def popularity_recommendations(events: pl.DataFrame, run_date: date, config: NightrecConfig) -> pl.DataFrame:
    """Popularity lists for every user in ``events``, each user's seen items excluded."""
    histories = user_histories(events)
    ranked = popularity_scores(events, run_date, config.popularity)
    recs = top_k_unseen(histories.get_column(USER_ID), ranked, seen_pairs(histories), config.k)
    return conform(
        recs.with_columns(
            pl.lit(run_date).alias(RUN_DATE),
            pl.lit(SOURCE_POPULARITY).alias(SOURCE),
            pl.lit(popularity_version(run_date)).alias(MODEL_VERSION),
        )
    )
