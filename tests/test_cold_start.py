"""Cold start from item attributes: content lists for cold users, segment and global popularity
after them, new items in the lists; on small data where the attribute signal is known."""

import polars as pl
import pytest

from nightrec.config import load_config
from nightrec.fallback.recommend import build_recommendations, night_rankings
from nightrec.metadata.content import ContentRecommender
from nightrec.metadata.features import tfidf_vectors
from nightrec.metadata.tables import read_item_table
from nightrec.recommender import RankedList
from nightrec.schema import ITEM_ID, MODEL_VERSION, RANK, SCORE, SOURCE, USER_ID
from tests.test_popularity import RUN, events

K = 6
CATEGORIES = {"shoe": range(0, 10), "tent": range(10, 20), "ball": range(20, 30)}


def _items(tmp_path, extra: list[tuple[str, str, str]] = ()) -> str:
    rows = [(f"i{n:02d}", category, f"{category}-brand{n % 3}") for category, span in CATEGORIES.items() for n in span]
    rows += list(extra)
    path = tmp_path / "items.parquet"
    pl.DataFrame(rows, schema=["item_id", "category", "brand"], orient="row").write_parquet(path)
    return str(path)


def _crowd() -> list[tuple]:
    # balls are what the crowd looks at most (6 views each against 5), 3 to 7 days ago
    views = [(n, 6 if n >= 20 else 5) for n in range(30)]
    return [(f"crowd{n * 10 + v}", f"i{n:02d}", "view", 3 + v % 5) for n, count in views for v in range(count)]


def _config(tmp_path, **settings):
    base = {"data_dir": str(tmp_path), "k": K, "popularity": {"min_history": 3}}
    return load_config(None, {**base, **settings}, environ={})


def test_a_user_with_one_event_in_a_category_gets_that_category(tmp_path):
    log = events([*_crowd(), ("newbie", "i12", "view", 1)])
    config = _config(tmp_path, metadata={"items_file": _items(tmp_path)})
    recs = build_recommendations(log, RUN, config)
    mine = recs.filter(pl.col(USER_ID) == "newbie").sort(RANK)
    tents = {f"i{n:02d}" for n in CATEGORIES["tent"]} - {"i12"}
    assert set(mine[ITEM_ID]) <= tents, mine
    assert set(mine[SOURCE]) == {"content"}
    assert set(mine[MODEL_VERSION]) == {f"content@{RUN.isoformat()}"}
    # without the item table the same user gets the crowd's balls
    plain = build_recommendations(log, RUN, _config(tmp_path)).filter(pl.col(USER_ID) == "newbie")
    assert set(plain[SOURCE]) == {"popularity"}
    assert not set(plain[ITEM_ID]) & tents


def test_order_of_availability_content_segment_then_global(tmp_path):
    log = events([*_crowd(), ("newbie", "i03", "view", 1), ("noattr", "zz9", "view", 1)])
    users = pl.DataFrame(
        {
            USER_ID: [*(f"crowd{n}" for n in range(200)), "member", "loner"],
            "club": [*(["hikers"] * 200), "hikers", None],
        }
    )
    config = _config(
        tmp_path, metadata={"items_file": _items(tmp_path)}, popularity={"min_history": 3, "segment_column": "club"}
    )
    recs = build_recommendations(log, RUN, config, users=users)
    source = dict(recs.filter(pl.col(RANK) == 1).select(USER_ID, SOURCE).iter_rows())
    assert source["newbie"] == "content"
    assert source["member"] == "segment_popularity"
    assert source["loner"] == "popularity"
    # an item without attributes gives no profile: popularity, not an empty "content" list
    assert source["noattr"] == "popularity"
    assert recs.group_by(USER_ID).len()["len"].to_list() == [K] * recs[USER_ID].n_unique()


def test_model_users_keep_the_model_list(tmp_path):
    log = events([*_crowd(), ("fan", "i01", "view", 1), ("fan", "i02", "view", 1), ("fan", "i03", "view", 1)])
    scores = pl.DataFrame(
        {USER_ID: ["fan"] * 3, RANK: [1, 2, 3], ITEM_ID: ["i25", "i26", "i27"], SCORE: [3.0, 2.0, 1.0]},
        schema_overrides={RANK: pl.Int32},
    )
    config = _config(tmp_path, metadata={"items_file": _items(tmp_path)})
    fan = build_recommendations(log, RUN, config, scores, "lstm@v1").filter(pl.col(USER_ID) == "fan").sort(RANK)
    assert fan[SOURCE].to_list()[:3] == ["model"] * 3
    assert set(fan[SOURCE].to_list()[3:]) == {"model+popularity"}


@pytest.mark.parametrize("slots", [0, 2])
def test_a_new_item_like_a_users_favourites_enters_their_list_when_slots_are_on(tmp_path, slots):
    new_tent = ("i99", "tent", "tent-brand1")
    log = events([*_crowd(), *[("camper", f"i{n}", "view", 3) for n in (10, 11, 13)]])
    config = _config(
        tmp_path,
        metadata={"items_file": _items(tmp_path, [new_tent, ("i98", "ball", "ball-brand2")])},
        recommend={"new_item_slots": slots, "new_item_days": 2},
        popularity={"min_history": 1},
    )
    recs = build_recommendations(log, RUN, config)
    camper = recs.filter(pl.col(USER_ID) == "camper").sort(RANK)
    assert camper.height == K
    new_rows = camper.filter(pl.col(SOURCE) == "new_item")
    if not slots:
        assert new_rows.is_empty() and "i99" not in camper[ITEM_ID]
        return
    # the new tent is chosen for the camper, at the end of the list; never a seen item
    assert new_rows[ITEM_ID][0] == "i99"
    assert new_rows[RANK].to_list() == list(range(K - new_rows.height + 1, K + 1))
    assert not set(camper[ITEM_ID]) & {"i10", "i11", "i13"}
    # a crowd member who looked at a ball gets the new ball first
    fan = recs.filter((pl.col(USER_ID) == "crowd200") & (pl.col(SOURCE) == "new_item"))
    assert fan[ITEM_ID][0] == "i98"


def test_user_shards_equal_the_whole_night(tmp_path):
    log = events([*_crowd(), ("newbie", "i12", "view", 1), ("camper", "i10", "view", 3), ("camper", "i11", "view", 2)])
    config = _config(
        tmp_path,
        metadata={"items_file": _items(tmp_path, [("i99", "tent", "tent-brand1")])},
        recommend={"new_item_slots": 1, "new_item_days": 2},
    )
    whole = build_recommendations(log, RUN, config)
    rankings = night_rankings(log, RUN, config)
    assert rankings.new_items == ["i99"]
    halves = [
        log.filter(pl.col(USER_ID).str.starts_with("crowd")),
        log.filter(~pl.col(USER_ID).str.starts_with("crowd")),
    ]
    parts = pl.concat([build_recommendations(h, RUN, config, rankings=rankings) for h in halves]).sort(USER_ID, RANK)
    assert parts.equals(whole)


def test_content_recommender_answers_the_ranked_list_contract(tmp_path):
    config = _config(tmp_path, metadata={"items_file": _items(tmp_path)})
    content = ContentRecommender(tfidf_vectors(read_item_table(config.metadata)))
    assert isinstance(content, RankedList)
    lists = content.top_k([["i01", "i02"], ["i21"], []], k=4)
    assert lists.filter(pl.col("user") == 0)[RANK].to_list() == [1, 2, 3, 4]
    first = set(lists.filter(pl.col("user") == 0)[ITEM_ID])
    assert first <= {f"i{n:02d}" for n in CATEGORIES["shoe"]} - {"i01", "i02"}
    assert lists.filter(pl.col("user") == 2).is_empty()  # no history, no signal


@pytest.mark.integration
@pytest.mark.slow
def test_nightly_flow_publishes_content_lists_and_new_items(prefect_harness, demo_events, tmp_path):
    from nightrec.ingest.readers import read_events
    from tests.flow_fixtures import latest_table, run_night, small_config

    events_dir, _ = demo_events
    log = read_events(events_dir)
    # the catalogue lists one item twice: its second row is set aside, not lost
    known = log.get_column(ITEM_ID).unique().sort().to_list()
    catalogue = [*known, "added-today-1", "added-today-2", known[0]]
    items = tmp_path / "catalogue.parquet"
    pl.DataFrame({ITEM_ID: catalogue, "category": [f"c{hash(i) % 7}" for i in catalogue]}).write_parquet(items)
    config = small_config(tmp_path / "data", events_dir, min_history=12).model_copy(deep=True)
    config = config.model_validate(
        {
            **config.model_dump(),
            "model": {"family": "item_cf"},
            "metadata": {"items_file": str(items)},
            "recommend": {"new_item_slots": 2, "new_item_days": 1},
        }
    )
    state = run_night(config)
    assert state.is_completed(), state.message
    table = latest_table(config)
    counts = dict(table.group_by("source").len().iter_rows())
    assert {"model", "content", "new_item"} <= set(counts), counts
    assert set(table.group_by("user_id").len()["len"]) == {config.k}
    seen = log.select("user_id", ITEM_ID).unique()
    assert table.join(seen, on=["user_id", ITEM_ID], how="semi").is_empty()
    # every user with fewer than popularity.min_history events and an item with attributes: content
    few = log.group_by("user_id").len().filter(pl.col("len") < 12)["user_id"]
    first = table.filter(pl.col(RANK) == 1 & pl.col("user_id").is_in(few.implode()))
    assert set(first["source"]) == {"content"}
    new = table.filter(pl.col(SOURCE) == "new_item")
    assert {"added-today-1", "added-today-2"} & set(new[ITEM_ID]), "catalogue-only items can be recommended"
    set_aside = pl.read_parquet(config.run_dir(table["run_date"][0]) / "items_quarantine.parquet")
    assert set_aside.rows() == [(known[0], f"c{hash(known[0]) % 7}", "duplicate_id")]


def test_auto_content_weight_follows_the_signal_the_night_has(tmp_path):
    config = _config(tmp_path, metadata={"items_file": _items(tmp_path)})
    spans = list(CATEGORIES.values())
    # every user's third item is in the category of their first two: the attributes predict it
    same = [(f"s{u}", f"i{spans[u % 3][(u + j) % 10]:02d}", "view", 5 - j) for u in range(60) for j in range(3)]
    # the third item is always the crowd's favourite ball, whatever the first two were
    favourite = [
        (f"f{u}", item, "view", 5 - j)
        for u in range(60)
        for j, item in enumerate([f"i{spans[u % 2][u % 10]:02d}", f"i{spans[u % 2][(u + 1) % 10]:02d}", "i25"])
    ]
    signal = night_rankings(events([*_crowd(), *same]), RUN, config).content_weight
    noise = night_rankings(events([*_crowd(), *favourite]), RUN, config).content_weight
    assert signal > 0 and noise == 0.0, (signal, noise)
    # a number is used as given
    fixed = _config(tmp_path, metadata={"items_file": _items(tmp_path), "content_weight": 0.7})
    assert night_rankings(events([*_crowd(), *same]), RUN, fixed).content_weight == 0.7
