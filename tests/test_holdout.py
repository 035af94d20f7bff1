"""Holding out each user's last interaction and ranking it in published lists."""

import polars as pl
import pytest

from nightrec.evaluation.holdout import hold_out_last, published_metrics


def test_hold_out_last_follows_time_then_input_order():
    events = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "item_id": ["x", "y", "z", "p", "q"],
            "timestamp": [3, 5, 5, 9, 1],
        }
    ).with_columns(pl.from_epoch("timestamp", time_unit="s").dt.replace_time_zone("UTC"))
    kept, held = hold_out_last(events)
    assert sorted(held.rows()) == [("a", "z"), ("b", "p")]
    assert kept.get_column("item_id").to_list() == ["x", "y", "q"]
    recs = pl.DataFrame({"user_id": ["a", "a", "c"], "rank": [1, 2, 1], "item_id": ["q", "z", "p"]})
    got = published_metrics(recs, held, k=10)
    assert got["users"] == 2 and got["users_with_list"] == 1
    assert got["recall@10"] == 0.5 and got["mrr@10"] == 0.25
    assert got["ndcg@10"] == pytest.approx(0.5 / 1.5849625007, rel=1e-9)
