"""The popularity fallback: decay, event weights, the window, segments and seen-item exclusion."""

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from nightrec.config import PopularityConfig
from nightrec.fallback.popularity import GROUP, grouped_rankings, popularity_scores, segment_groups, top_k_unseen
from nightrec.schema import EVENT_SCHEMA, ITEM_ID, RANK, SCORE, USER_ID

RUN = date(2026, 3, 11)


def events(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (user, item, event_type, days before the run date)."""
    midnight = datetime(RUN.year, RUN.month, RUN.day, tzinfo=UTC)
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": [midnight - timedelta(days=r[3]) for r in rows],
            "session_id": [None] * len(rows),
            "value": [None] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


def test_scores_decay_by_half_life_and_weigh_event_types():
    config = PopularityConfig(half_life_days=7.0, event_weights={"view": 1.0, "purchase": 8.0})
    log = events([("u1", "a", "view", 7), ("u2", "a", "view", 14 - 1e-9), ("u1", "b", "purchase", 1)])
    scores = dict(popularity_scores(log, RUN, config).iter_rows())
    assert scores["a"] == pytest.approx(0.5 + 0.25)
    assert scores["b"] == pytest.approx(8 * 0.5 ** (1 / 7))
    assert list(popularity_scores(log, RUN, config)[ITEM_ID]) == ["b", "a"]


def test_items_absent_from_the_window_are_never_recommended():
    config = PopularityConfig(window_days=14)
    log = events([("u1", "old", "purchase", 15), ("u1", "new", "view", 2), ("u2", "future", "view", -1)])
    ranked = popularity_scores(log, RUN, config)
    assert ranked[ITEM_ID].to_list() == ["new"]
    recs = top_k_unseen(pl.Series(["u9"]), ranked, pl.DataFrame(schema={USER_ID: pl.String, ITEM_ID: pl.String}), 5)
    assert recs[ITEM_ID].to_list() == ["new"]


def test_top_k_unseen_excludes_seen_items_and_widens_for_heavy_users():
    ranked = pl.DataFrame({ITEM_ID: [f"i{n:03d}" for n in range(100)], SCORE: [100.0 - n for n in range(100)]})
    heavy_seen = [f"i{n:03d}" for n in range(0, 95)]
    seen = pl.DataFrame({USER_ID: ["heavy"] * 95 + ["light"], ITEM_ID: [*heavy_seen, "i001"]})
    recs = top_k_unseen(pl.Series(["heavy", "light", "cold"]), ranked, seen, 3)
    lists = {u: g[ITEM_ID].to_list() for (u,), g in recs.group_by(USER_ID)}
    assert lists == {
        "heavy": ["i095", "i096", "i097"],
        "light": ["i000", "i002", "i003"],
        "cold": ["i000", "i001", "i002"],
    }
    assert recs.filter(pl.col(USER_ID) == "light")[RANK].to_list() == [1, 2, 3]
    # Fewer eligible items than k: every eligible item, nothing repeated.
    assert top_k_unseen(pl.Series(["heavy"]), ranked, seen, 10)[ITEM_ID].to_list() == [
        f"i{n:03d}" for n in range(95, 100)
    ]


def test_segments_get_their_own_list_and_small_segments_the_global_one():
    config = PopularityConfig(min_segment_users=2)
    rows = [(f"fr{n}", "croissant", "purchase", 1) for n in range(3)]
    rows += [(f"de{n}", "pretzel", "view", 1) for n in range(5)]
    rows += [("it0", "pizza", "view", 1), ("de0", "beer", "view", 1)]
    log = events(rows)
    users = pl.DataFrame(
        {
            USER_ID: ["fr0", "fr1", "fr2", "de0", "de1", "de2", "de3", "de4", "it0", "us0"],
            "country": ["FR"] * 3 + ["DE"] * 5 + ["IT", None],
        }
    )
    groups = segment_groups(users, "country", log[USER_ID].unique(), config.min_segment_users)
    by_user = dict(zip(groups[USER_ID], groups[GROUP], strict=True))
    assert by_user["it0"] == 0 and by_user["us0"] == 0  # too small / no segment: the global list
    assert by_user["fr0"] != 0 and by_user["de0"] != 0 and by_user["fr0"] != by_user["de0"]
    ranked = grouped_rankings(log, RUN, config, groups)
    empty = pl.DataFrame(schema={USER_ID: pl.String, ITEM_ID: pl.String})
    recs = top_k_unseen(
        pl.DataFrame({USER_ID: ["fr9", "de9", "x"], GROUP: [by_user["fr0"], by_user["de0"], 0]}), ranked, empty, 4
    )
    lists = {u: g[ITEM_ID].to_list() for (u,), g in recs.group_by(USER_ID)}
    # A segment's own favourites first, then the global list as back-up; every list is full.
    assert lists["fr9"][0] == "croissant" and lists["de9"][:2] == ["pretzel", "beer"]
    assert lists["x"][0] == "croissant"  # 3 purchases (24) beat 5 views (5) globally
    assert all(len(items) == 4 and len(set(items)) == 4 for items in lists.values())
