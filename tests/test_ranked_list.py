"""Popularity scores by hand, and the ranked-list contract: top-K per user, seen items excluded."""

from datetime import UTC, date, datetime

import polars as pl
import pytest

from nightrec.config import PopularityConfig
from nightrec.fallback.history import seen_pairs
from nightrec.fallback.popularity import popularity_scores, top_k_unseen

RUN = date(2026, 5, 10)


def _events(rows):
    return pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "timestamp"], orient="row").with_columns(
        pl.col("timestamp").dt.replace_time_zone("UTC")
    )


def test_decay_and_weights_by_hand():
    events = _events(
        [
            ("u1", "a", "view", datetime(2026, 5, 9)),  # 1 day old: 1 * 0.5 ** (1/2)
            ("u2", "a", "purchase", datetime(2026, 5, 7)),  # 3 days: 8 * 0.5 ** 1.5
            ("u1", "b", "click", datetime(2026, 5, 9, 12)),  # 0.5 day: 2 * 0.5 ** 0.25
            ("u3", "c", "view", datetime(2026, 4, 1)),  # outside the 14-day window: never recommended
            ("u3", "d", "view", datetime(2026, 5, 10, 1)),  # after the run date: ignored
        ]
    )
    scores = popularity_scores(events, RUN, PopularityConfig(half_life_days=2.0))
    assert scores["item_id"].to_list() == ["a", "b"]
    assert scores["score"].to_list() == pytest.approx([0.5**0.5 + 8 * 0.5**1.5, 2 * 0.5**0.25])


def test_top_k_excludes_seen_and_widens_for_heavy_users():
    ranked = pl.DataFrame({"item_id": [f"i{n}" for n in range(30)], "score": [30.0 - n for n in range(30)]})
    events = _events(
        [("heavy", f"i{n}", "view", datetime(2026, 5, 1, tzinfo=UTC)) for n in range(0, 25)]
        + [("light", "i1", "view", datetime(2026, 5, 1, tzinfo=UTC))]
    )
    recs = top_k_unseen(events["user_id"].unique(), ranked, seen_pairs(events).collect(), k=4)
    heavy = recs.filter(pl.col("user_id") == "heavy")
    light = recs.filter(pl.col("user_id") == "light")
    assert heavy["item_id"].to_list() == ["i25", "i26", "i27", "i28"]
    assert light["item_id"].to_list() == ["i0", "i2", "i3", "i4"]
    assert light["rank"].to_list() == [1, 2, 3, 4]


def test_small_catalogue_gives_every_unseen_item():
    ranked = pl.DataFrame({"item_id": ["a", "b", "c"], "score": [3.0, 2.0, 1.0]})
    seen = pl.DataFrame({"user_id": ["u"], "item_id": ["b"]})
    recs = top_k_unseen(pl.Series(["u", "v"]), ranked, seen, k=5)
    assert recs.filter(pl.col("user_id") == "u")["item_id"].to_list() == ["a", "c"]
    assert recs.filter(pl.col("user_id") == "v")["item_id"].to_list() == ["a", "b", "c"]
