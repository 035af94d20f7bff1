"""Metric values checked against numbers computed by hand."""

import math

import numpy as np
import pytest
import torch

from lightning_modules.metrics import RankingAccumulator, SplitMetrics, target_ranks
from nightrec.evaluation.metrics import metrics_from_ranks, rank_against, ranking_metrics

NEG = float("-inf")


def test_ties_count_against_the_target():
    scores = torch.tensor([[NEG, 0.5, 0.5, 0.1], [NEG, 1.0, 1.0, 1.0], [NEG, 0.1, 0.2, 0.3]])
    # row 0: item 1 ties with item 2 -> rank 1 (not 0); row 1: all tied -> last; row 2: clear best.
    targets = torch.tensor([1, 2, 3])
    assert target_ranks(scores, targets, torch.topk(scores, 4).values).tolist() == [1, 2, 0]
    # From each row's top 2 only (depth 1): rank 0 stays exact, every deeper rank reads 1.
    assert target_ranks(scores, targets, torch.topk(scores, 2).values).tolist() == [1, 1, 0]


def test_recall_ndcg_mrr_by_hand():
    acc = RankingAccumulator(n_items=12, ks=(1, 3))
    # Four users; target ranks (0-based) 0, 2, 5 and a tie at rank 1.
    scores = torch.full((4, 13), NEG)
    scores[:, 1:] = torch.arange(12, 0, -1, dtype=torch.float)  # item 1 best, item 12 worst
    scores[3, 2] = scores[3, 1]  # user 3: item 2 ties the best item 1
    acc.update(scores, torch.tensor([1, 3, 6, 2]))
    m = acc.compute()
    # ranks: 0, 2, 5, 1 (tie pushes item 2 behind item 1)
    assert m["users"] == 4
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["recall@3"] == pytest.approx(3 / 4)
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 4)
    assert m["mrr@1"] == pytest.approx(1 / 4)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 4)
    # Every user gets the same top 3 (items 1, 2, 3), except ties picked by topk: at most 3 + 1 items.
    assert m["coverage@1"] == pytest.approx(1 / 12)
    assert m["coverage@3"] in (pytest.approx(3 / 12), pytest.approx(4 / 12))


def test_coverage_counts_distinct_items_shown():
    acc = RankingAccumulator(n_items=6, ks=(1, 2))
    scores = torch.tensor([[NEG, 6, 5, 4, 3, 2, 1], [NEG, 1, 2, 3, 4, 5, 6]], dtype=torch.float)
    acc.update(scores, torch.tensor([1, 1]))
    m = acc.compute()
    assert m["coverage@1"] == pytest.approx(2 / 6)  # items 1 and 6
    assert m["coverage@2"] == pytest.approx(4 / 6)  # items 1, 2, 5, 6
    assert m["recall@2"] == pytest.approx(1 / 2)


def test_masking_seen_items_lifts_the_target_and_a_masked_target_misses():
    split = SplitMetrics(n_items=4)
    scores = torch.tensor([[0.0, 4, 3, 2, 1], [0.0, 4, 3, 2, 1]])
    batch = {
        "target": torch.tensor([3, 1]),
        "activity": torch.tensor([5, 5]),
        # user 0 saw items 1 and 2 (above its target); user 1 saw its own target.
        "seen_rows": torch.tensor([0, 0, 1]),
        "seen_cols": torch.tensor([1, 2, 1]),
    }
    split.update(scores, batch)
    m = split.compute()
    assert m["mrr@10"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["masked/mrr@10"] == pytest.approx((1 + 0) / 2)
    assert m["masked/recall@20"] == pytest.approx(1 / 2)


def test_padding_column_never_ranks():
    split = SplitMetrics(n_items=2)
    scores = torch.tensor([[9.0, 1.0, 2.0]])  # the padding column scores highest
    empty = torch.zeros(0, dtype=torch.long)
    split.update(
        scores, {"target": torch.tensor([2]), "activity": torch.tensor([1]), "seen_rows": empty, "seen_cols": empty}
    )
    assert split.compute()["ndcg@10"] == pytest.approx(1.0)


def test_activity_slices():
    acc = RankingAccumulator(n_items=3, ks=(1,))
    scores = torch.tensor([[NEG, 3, 2, 1]] * 3)
    acc.update(scores, torch.tensor([1, 2, 1]), torch.tensor([5, 50, 500]))
    m = acc.compute()
    assert (m["short/users"], m["medium/users"], m["long/users"]) == (1, 1, 1)
    assert (m["short/recall@1"], m["medium/recall@1"], m["long/recall@1"]) == (1.0, 0.0, 1.0)
    assert m["recall@1"] == pytest.approx(2 / 3)


def test_shards_summed_equal_one_pass_exactly():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 41, generator=gen)
    targets = torch.randint(1, 41, (50,), generator=gen)
    activity = torch.randint(0, 300, (50,), generator=gen)
    whole = RankingAccumulator(40)
    whole.update(scores.clone(), targets, activity)
    parts = [RankingAccumulator(40) for _ in range(3)]
    for part, idx in zip(parts, torch.tensor_split(torch.arange(50), 3), strict=True):
        part.update(scores[idx].clone(), targets[idx], activity[idx])
    merged = RankingAccumulator(40)
    for part in parts:
        merged.merge_state(part)  # the sum reduction DDP applies across ranks
    assert merged.compute() == whole.compute()


def test_the_one_rank_to_metric_function_by_hand():
    # 0-based ranks 0, 2 and a miss; K = 1 and 3
    m = metrics_from_ranks([0, 2, math.inf], ks=(1, 3))
    assert m["users"] == 3
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 3) / 3)
    assert ranking_metrics([1, 0, 1], 3, ks=(1, 3)) == m
    assert metrics_from_ranks([], ks=(10,))["ndcg@10"] == 0.0


def test_shared_scores_rank_ties_against_the_target():
    scores = np.array([-np.inf, 3.0, 2.0, 2.0, 0.0])  # column 0 is padding
    # item 1 first; items 2 and 3 tie, so each ranks behind the other; item 4 last
    assert rank_against(scores, np.array([1, 2, 3, 4])).tolist() == [0, 2, 2, 3]


def test_the_accumulator_and_the_rank_list_agree():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(40, 31, generator=gen)
    scores[:, 0] = NEG
    targets = torch.randint(1, 31, (40,), generator=gen)
    acc = RankingAccumulator(30)
    acc.update(scores.clone(), targets)
    got = acc.compute()
    want = metrics_from_ranks(target_ranks(scores, targets, scores.sort(dim=1, descending=True).values).tolist())
    assert {k: got[k] for k in want} == want
