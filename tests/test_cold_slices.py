"""The cold-start slices checked by hand: cold users (one or two training events) and cold items
(targets first seen after the training cut-off), from the split through the evaluator to the report."""

import math
from datetime import timedelta

import numpy as np
import pytest
import torch

from lightning_modules.baselines import PopularityRecommender
from lightning_modules.data import SequenceDataModule
from lightning_modules.metrics import RankingAccumulator
from lightning_modules.recommend import Recommender
from nightrec.config import SequenceConfig
from nightrec.evaluation.metrics import metrics_from_ranks
from nightrec.evaluation.table import metric_table
from nightrec.sequences.build import build_sequences, write_sequences
from tests.sequence_fixtures import T0, decode, events

NEG = float("-inf")


def _ranked(ranks: list[int], n_items: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores under which target ``r + 1`` ranks ``r`` (item 1 best): ``(scores, targets)``."""
    scores = torch.full((len(ranks), n_items + 1), NEG)
    scores[:, 1:] = torch.arange(n_items, 0, -1, dtype=torch.float)
    return scores, torch.tensor([r + 1 for r in ranks])


def test_cold_user_ndcg_by_hand():
    # Training events 1, 2, 3 and 0: only the first two users are cold (one or two events).
    scores, targets = _ranked([0, 2, 1, 0])
    acc = RankingAccumulator(n_items=12, ks=(1, 3))
    acc.update(scores, targets, torch.tensor([1, 2, 3, 0]))
    m = acc.compute()
    assert m["cold_users/users"] == 2
    assert m["cold_users/ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert m["cold_users/recall@1"] == pytest.approx(1 / 2)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3) + 1) / 4)
    # the cold users are short users too (slices overlap); the plain-numpy path agrees exactly
    assert m["short/users"] == 4
    numpy = metrics_from_ranks([0, 2, 1, 0], (1, 3), np.array([1, 2, 3, 0]), np.zeros(4, bool))
    assert {k: numpy[k] for k in numpy} == {k: m[k] for k in numpy}


def test_cold_item_recall_by_hand_and_a_target_that_cannot_be_ranked_misses():
    # Four targets, three of them cold: ranked 0, ranked 4, and masked (-inf: the model cannot rank it).
    scores, targets = _ranked([0, 4, 7, 2])
    scores[2, targets[2]] = NEG
    acc = RankingAccumulator(n_items=12, ks=(1, 5))
    acc.update(scores, targets, torch.tensor([5, 5, 5, 5]), torch.tensor([True, True, True, False]))
    m = acc.compute()
    assert m["cold_items/targets"] == 3 and "cold_items/users" not in m
    assert m["cold_items/recall@1"] == pytest.approx(1 / 3)
    assert m["cold_items/recall@5"] == pytest.approx(2 / 3)
    assert m["recall@5"] == pytest.approx(3 / 4)
    # a user with nothing to score from counts in its slices as a miss
    acc.add_misses(torch.tensor([1]), torch.tensor([True]))
    m = acc.compute()
    assert (m["cold_items/targets"], m["cold_users/users"], m["users"]) == (4, 1, 5)
    assert m["cold_items/recall@5"] == pytest.approx(2 / 4) and m["cold_users/recall@5"] == 0.0


def test_leave_last_out_cold_item_is_one_seen_only_in_held_out_positions():
    ev = events([("u1", "a", 0), ("u1", "b", 1), ("u1", "x", 2)] + [("u2", i, t) for t, i in enumerate("abcd")])
    seqs = build_sequences(ev, SequenceConfig(collapse_repeats=False))
    # u1 trains on [a] (no training sequence), u2 on [a, b]: items a and b were seen in training.
    for frame, expected in ((seqs.valid, {"u1": ("b", 1, False), "u2": ("c", 2, True)}),
                            (seqs.test, {"u1": ("x", 1, True), "u2": ("d", 2, True)})):  # fmt: skip
        ids = dict(zip(seqs.users["user_idx"], seqs.users["user_id"], strict=True))
        slices = {ids[u]: (n, c) for u, n, c in frame.select("user_idx", "train_events", "cold_target").rows()}
        assert {u: (t, *slices[u]) for u, t in decode(seqs, frame, "target").items()} == expected


def _temporal_night(tmp_path):
    """Twelve items trained before the cut-off by ``heavy``; ``new`` is first seen after it.

    ``light`` has one event before the validation cut-off, then reads ``new``; ``regular`` has
    four, then reads ``f0``. Every time is in minutes after T0; the validation window is 10-20.
    """
    rows = [("heavy", f"f{i}", i * 0.5) for i in range(12)] + [("heavy", "f0", 15), ("heavy", "f1", 25)]
    rows += [("light", "f3", 1), ("light", "new", 12), ("light", "f4", 22)]
    rows += [("regular", f"f{i}", 1 + i) for i in (5, 6, 7, 8)] + [("regular", "f0", 13), ("regular", "new", 21)]
    config = SequenceConfig(
        collapse_repeats=False,
        split="temporal",
        temporal_cutoff=T0 + timedelta(minutes=20),
        temporal_window_days=10 / 1440,
    )
    seqs = build_sequences(events(rows), config)
    return seqs, write_sequences(seqs, tmp_path / "sequences")


def test_temporal_split_marks_cold_users_and_cold_targets(tmp_path):
    seqs, _ = _temporal_night(tmp_path)
    ids = dict(zip(seqs.users["user_idx"], seqs.users["user_id"], strict=True))
    valid = {ids[u]: (n, c) for u, n, c in seqs.valid.select("user_idx", "train_events", "cold_target").rows()}
    assert decode(seqs, seqs.valid, "target") == {"heavy": "f0", "light": "new", "regular": "f0"}
    assert valid == {"heavy": (12, False), "light": (1, True), "regular": (4, False)}
    # test rows count the events before the *training* cut-off too; "new" stays cold
    test = {ids[u]: (n, c) for u, n, c in seqs.test.select("user_idx", "train_events", "cold_target").rows()}
    assert test == {"heavy": (12, False), "light": (1, False), "regular": (4, True)}


class _Oracle(Recommender):
    """Puts one item first for everyone: a model that can rank the cold item."""

    def __init__(self, items, best: int):
        super().__init__(items)
        self.best = best

    def scores(self, histories, lengths):
        scores = torch.zeros(len(histories), self.n_items + 1)
        scores[:, self.best] = 1.0
        return scores


def test_cold_item_recall_through_the_evaluator_zero_for_popularity_one_for_a_model_that_ranks_it(tmp_path):
    _, folder = _temporal_night(tmp_path)
    data = SequenceDataModule(folder, max_len=8)
    data.load()
    flat, _, _ = data.train_lists
    valid = data.eval_rows["valid"]
    assert valid.cold.tolist().count(True) == 1 and data.n_items == 13  # f0..f11 and new
    popularity = PopularityRecommender(data.items, flat).evaluate(valid)
    # "new" has no training count: every other item scores at least its 0, so it ranks 13th of 13
    assert popularity["cold_items/targets"] == 1 and popularity["cold_items/recall@10"] == 0.0
    assert popularity["cold_users/users"] == 1 and popularity["cold_users/ndcg@10"] == 0.0
    new = data.items.filter(data.items["item_id"] == "new")["item_idx"].item()
    oracle = _Oracle(data.items, new).evaluate(valid)
    assert oracle["cold_items/recall@10"] == 1.0 and oracle["masked/cold_items/recall@20"] == 1.0
    assert oracle["cold_users/ndcg@10"] == 1.0 and oracle["recall@10"] == pytest.approx(1 / 3)


def test_the_report_table_shows_the_cold_slices_with_their_sizes():
    valid = {"ndcg@10": 0.2, "cold_users/ndcg@10": 0.123456, "cold_users/users": 7}
    valid |= {"cold_items/recall@20": 0.0, "cold_items/targets": 0}
    metrics = {"candidate": {"valid": valid, "test": {"ndcg@10": 0.2}}, "popularity": {"ndcg@10": 0.1}}
    rows = metric_table(metrics)
    assert rows[0]["cold_users/ndcg@10"] == 0.1235 and rows[0]["cold_users/users"] == 7
    assert rows[0]["cold_items/recall@20"] == "-" and rows[0]["cold_items/targets"] == 0  # an empty slice
    assert "cold_users/ndcg@10" not in rows[1]  # not measured: no column rather than a made-up 0
