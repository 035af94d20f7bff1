"""Who gets what: model, popularity or model+popularity; exactly K rows, no repeats, no seen item."""

from datetime import date, timedelta

import duckdb
import polars as pl
import pytest

from nightrec.config import load_config
from nightrec.errors import InputError
from nightrec.fallback.history import read_user_table
from nightrec.fallback.recommend import build_recommendations, fallback_list, popularity_recommendations
from nightrec.schema import ITEM_ID, RANK, SOURCE, USER_ID
from tests.test_popularity import RUN, events

K = 5


def _config(tmp_path, **popularity):
    return load_config(None, {"data_dir": str(tmp_path), "k": K, "popularity": popularity}, environ={})


def _catalogue_log() -> pl.DataFrame:
    rows = [(f"crowd{n}", f"i{n % 30:02d}", "view", 1 + n % 5) for n in range(300)]
    rows += [("m1", "i00", "view", 1), ("m1", "i01", "view", 1), ("m1", "i02", "view", 2)]
    rows += [("m2", "i00", "view", 1), ("m2", "i03", "click", 1)]
    rows += [("few", "i04", "view", 1), ("cold", "i00", "purchase", 3)]
    return events(rows)


def _model_scores() -> pl.DataFrame:
    lists = {
        "m1": ["i10", "i11", "i12", "i13", "i14"],
        # seen (i00, i03), a repeat (i20) and an item the model ranked twice: only i20, i21 survive
        "m2": ["i00", "i20", "i03", "i20", "i21"],
        "few": ["i15", "i16", "i17", "i18", "i19"],
    }
    return pl.DataFrame(
        [(u, r + 1, item, 10.0 - r) for u, items in lists.items() for r, item in enumerate(items)],
        schema={USER_ID: pl.String, RANK: pl.Int32, ITEM_ID: pl.String, "score": pl.Float64},
        orient="row",
    )


def _check_lists(recs: pl.DataFrame, log: pl.DataFrame, k: int = K) -> None:
    per_user = recs.group_by(USER_ID).agg(pl.col(RANK), pl.col(ITEM_ID))
    for row in per_user.iter_rows(named=True):
        assert sorted(row[RANK]) == list(range(1, k + 1)), row
        assert len(set(row[ITEM_ID])) == k, row
    seen = log.select(USER_ID, ITEM_ID).unique()
    assert recs.join(seen, on=[USER_ID, ITEM_ID], how="semi").is_empty()


def test_model_users_cold_users_and_short_model_lists(tmp_path):
    log = _catalogue_log()
    users = pl.DataFrame({USER_ID: ["tableonly", "m1"]})
    config = _config(tmp_path, min_history=2)
    recs = build_recommendations(log, RUN, config, _model_scores(), "gru@v1", users=users)
    _check_lists(recs, log)
    assert recs[USER_ID].n_unique() == log[USER_ID].n_unique() + 1
    src = {u: g.sort(RANK)[SOURCE].to_list() for (u,), g in recs.group_by(USER_ID)}
    assert src["m1"] == ["model"] * 5
    assert src["m2"] == ["model", "model"] + ["model+popularity"] * 3
    assert src["few"] == src["cold"] == src["tableonly"] == ["popularity"] * 5  # few: 1 event < min_history
    m2 = recs.filter(pl.col(USER_ID) == "m2").sort(RANK)
    assert m2[ITEM_ID].to_list()[:2] == ["i20", "i21"]
    assert set(m2["model_version"]) == {"gru@v1"}
    assert set(recs.filter(pl.col(SOURCE) == "popularity")["model_version"]) == {f"popularity@{RUN}"}


def test_small_catalogue_gives_every_eligible_item(tmp_path):
    log = events([("a", "x", "view", 1), ("b", "y", "view", 1), ("b", "z", "view", 1)])
    recs = build_recommendations(log, RUN, _config(tmp_path))
    lists = {u: sorted(g[ITEM_ID]) for (u,), g in recs.group_by(USER_ID)}
    assert lists == {"a": ["y", "z"], "b": ["x"]}


def test_user_table_ids_of_another_type_match_event_ids(tmp_path):
    log = events([("1", "x", "view", 1), ("2", "y", "view", 1), ("2", "z", "view", 1)])
    path = tmp_path / "users.parquet"
    pl.DataFrame({USER_ID: [1, 2, 3], "country": ["FR", "FR", "DE"]}).write_parquet(path)
    recs = build_recommendations(log, RUN, _config(tmp_path, users_file=path))
    assert sorted(recs[USER_ID].unique()) == ["1", "2", "3"]
    assert recs.filter(pl.col(USER_ID) == "1")[ITEM_ID].sort().to_list() == ["y", "z"]
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,country\n1,FR\nu7,DE\n")
    assert read_user_table(csv)[USER_ID].to_list() == ["1", "u7"]


def test_mixed_type_user_ids_are_rejected_with_the_column_named(tmp_path):
    mixed = pl.DataFrame({USER_ID: pl.Series([1, "a", 2.5], dtype=pl.Object)})
    with pytest.raises(InputError, match="user table: column 'user_id'"):
        build_recommendations(_catalogue_log(), RUN, _config(tmp_path), users=mixed)
    fractional = tmp_path / "frac.parquet"
    pl.DataFrame({USER_ID: [1.0, 2.5]}).write_parquet(fractional)
    with pytest.raises(InputError, match=r"frac\.parquet: column 'user_id' holds fractional numbers"):
        read_user_table(fractional)


def test_empty_night_gives_an_empty_table(tmp_path):
    log = events([])
    assert popularity_recommendations(log, RUN, _config(tmp_path)).is_empty()
    assert fallback_list(log, RUN, _config(tmp_path)).is_empty()


def test_fallback_list_is_the_global_top_k(tmp_path):
    log = _catalogue_log()
    top = fallback_list(log, RUN, _config(tmp_path))
    assert top[RANK].to_list() == [1, 2, 3, 4, 5]
    assert top[ITEM_ID][0] == "i00"  # the crowd's views plus a purchase


@pytest.mark.integration
def test_after_the_demo_night_every_user_has_k_rows_and_no_seen_item(demo_night):
    """What `make demo` publishes, on the shared demo night: popularity below popularity.min_history (3)."""
    config, state = demo_night
    run_date = date.fromisoformat(state.result()["run_date"])
    clean = pl.read_parquet(config.run_dir(run_date) / "clean.parquet")
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        latest = con.sql("SELECT * FROM recommendations_latest").pl()
    _check_lists(latest, clean, k=config.k)
    assert set(latest[USER_ID]) == set(clean[USER_ID])
    history = clean.group_by(USER_ID).len()
    cold = set(history.filter(pl.col("len") < 3)[USER_ID])
    sources = latest.group_by(USER_ID).agg(pl.col(SOURCE).unique())
    by_user = {row[USER_ID]: set(row[SOURCE]) for row in sources.iter_rows(named=True)}
    assert cold and all(by_user[u] == {"popularity"} for u in cold)  # too little history: the fallback
    warm = set(by_user) - cold
    assert warm and all(by_user[u] <= {"model", "model+popularity"} for u in warm)


def test_lists_for_a_few_users_from_the_whole_log_equal_the_nights_lists(tmp_path):
    """What a refresh relies on: the lists of a few users, built from their histories with the
    popularity and segment sizes of the whole log, are exactly the rows the whole night gives them."""
    from nightrec.ingest.synthetic import SyntheticSpec, generate_events

    log = generate_events(SyntheticSpec(users=300, items=80, days=3, seed=5, end_date=RUN - timedelta(days=1)))
    everyone = log.get_column(USER_ID).unique().sort()
    table = pl.DataFrame({USER_ID: everyone, "segment": [f"s{i % 3}" for i in range(everyone.len())]})
    config = _config(tmp_path, segment_column="segment", min_segment_users=40)
    # every user is offered the two most viewed items: seen ones drop out, popularity fills the rest
    top = log.group_by(ITEM_ID).len().sort("len", ITEM_ID, descending=[True, False]).head(2)[ITEM_ID]
    scores = pl.DataFrame(
        {USER_ID: everyone.to_list() * 2, RANK: [1] * everyone.len() + [2] * everyone.len()}
    ).with_columns(
        pl.when(pl.col(RANK) == 1).then(pl.lit(top[0])).otherwise(pl.lit(top[1])).alias(ITEM_ID),
        (3.0 - pl.col(RANK)).alias("score"),
    )
    night = build_recommendations(log, RUN, config, model_scores=scores, model_version="m1", users=table)
    few = everyone.sample(12, seed=1)
    mine = log.filter(pl.col(USER_ID).is_in(few.implode()))
    refreshed = build_recommendations(
        mine,
        RUN,
        config,
        model_scores=scores,
        model_version="m1",
        users=table,
        popularity_events=log.lazy(),
        active_users=everyone,
    ).filter(pl.col(USER_ID).is_in(few.implode()))
    expected = night.filter(pl.col(USER_ID).is_in(few.implode()))
    # the same rows; popularity scores summed in another order may differ in the last bits
    assert refreshed.drop("score").equals(expected.drop("score"))
    assert (refreshed["score"] - expected["score"]).abs().max() < 1e-9
    assert "model+popularity" in set(refreshed.get_column(SOURCE)), "model lists filled from the segments' lists"
