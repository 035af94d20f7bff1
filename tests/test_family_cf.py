"""Closed-form families (item_cf, user_cf, ease): hand-computed answers, and the whole model-folder
life (train, reload, resume, warm start, ranked lists, batch scoring, promotion gate)."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from lightning_modules.data import SequenceDataModule
from lightning_modules.evaluate import model_valid_metrics
from lightning_modules.families import FAMILIES, item_cf, user_cf
from lightning_modules.families.ease import EASE
from lightning_modules.families.item_cf import ItemCF
from lightning_modules.families.neighbourhood import history_vector
from lightning_modules.families.user_cf import UserCF
from lightning_modules.model_io import load_model, read_checkpoint
from lightning_modules.recommend import ModelRecommender
from lightning_modules.scoring import score_users
from lightning_modules.train import main
from tests.model_fixtures import tiny_config, write_sequence_dir

CF = ("item_cf", "user_cf", "ease")


def _sequences(*seqs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([i for s in seqs for i in s], dtype=np.int64), np.array([len(s) for s in seqs], dtype=np.int64)


def _history(*items: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([list(items)]), torch.tensor([len(items)])


def test_item_cf_is_shrunk_cosine_over_users_with_recency():
    # Items 1 and 2 are always read together; 3 shares one reader with 1; 4 and 5 never meet 1.
    net = ItemCF(5, neighbors=10, shrinkage=2.0, recency_decay=0.5)
    net.fit(*_sequences([1, 2], [2, 1], [1, 2, 3], [3, 4], [4, 5]))
    scores = net.item_scores(*_history(1))[0]
    assert scores[2] == pytest.approx(1.0 * 3 / (3 + 2))  # 3 shared readers of 3 each: cosine 1
    assert scores[3] == pytest.approx(1 / np.sqrt(3 * 2) * 1 / (1 + 2))
    assert scores[4] == scores[5] == scores[1] == 0  # no shared reader; an item is not its own neighbour
    # The item before the last weighs decay**1.
    both = net.item_scores(*_history(4, 1))[0]
    assert both[3] == pytest.approx(scores[3] + 0.5 * (1 / np.sqrt(2 * 2) * 1 / 3))
    # neighbors=1 keeps only each item's best neighbour.
    one = ItemCF(5, neighbors=1, shrinkage=2.0)
    one.fit(*_sequences([1, 2], [2, 1], [1, 2, 3], [3, 4], [4, 5]))
    assert one.arch["nnz"] <= 5 and one.item_scores(*_history(1))[0].nonzero().view(-1).tolist() == [2]


def test_user_cf_lends_the_nearest_users_items():
    net = UserCF(6, neighbors=2, shrinkage=0.0, recency_decay=1.0)
    net.fit(*_sequences([1, 2, 3], [1, 2, 4], [5, 6]))
    scores = net.item_scores(*_history(1, 2))[0]
    cosine = 2 / np.sqrt(2 * 3)  # the history shares 2 items with each of the first two users
    assert scores[3] == pytest.approx(cosine) and scores[4] == pytest.approx(cosine)
    assert scores[1] == pytest.approx(2 * cosine) and scores[5] == scores[6] == 0
    assert net.arch["n_users"] == 3 and net.arch["nnz"] == 8
    # One neighbour only: the tie between the first two users goes one way, the third never counts.
    single = UserCF(6, neighbors=1, shrinkage=0.0, recency_decay=1.0)
    single.fit(*_sequences([1, 2, 3], [1, 2, 4], [5, 6]))
    lent = single.item_scores(*_history(1, 2))[0]
    assert (lent[3] > 0) != (lent[4] > 0) and lent[5] == 0


def test_ease_matches_numpys_closed_form_on_four_items():
    x = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1], [1, 1, 0, 1]], dtype=float)
    l2 = 0.5
    p = np.linalg.inv(x.T @ x + l2 * np.eye(4))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    net = EASE(4, l2=l2)
    net.fit(*_sequences(*[[j + 1 for j in np.nonzero(row)[0]] for row in x]))
    np.testing.assert_allclose(net.weights[1:, 1:].numpy(), expected, rtol=1e-4, atol=1e-6)
    assert not net.weights[0].any() and not net.weights[:, 0].any()
    scores = net.item_scores(*_history(1, 3))[0, 1:].numpy()
    np.testing.assert_allclose(scores, expected[0] + expected[2], rtol=1e-4, atol=1e-6)


def test_chunked_fits_and_scores_equal_the_whole_ones(monkeypatch):
    """Memory is bounded by chunking item pairs (item_cf) and history x user pairs (user_cf)."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 12, size=40)
    flat, histories = rng.integers(1, 31, size=int(lengths.sum())), torch.randint(0, 31, (9, 6))
    lengths_q = (histories > 0).sum(1)
    histories = torch.sort(histories, dim=1, descending=True).values  # right-padded
    whole = ItemCF(30, neighbors=5)
    whole.fit(flat, lengths)
    chunked = ItemCF(30, neighbors=5)
    monkeypatch.setattr(item_cf, "PAIRS_PER_CHUNK", 31 * 4)  # four items at a time
    chunked.fit(flat, lengths)
    assert torch.equal(whole.sim_col, chunked.sim_col) and torch.equal(whole.sim_val, chunked.sim_val)
    users = UserCF(30, neighbors=7)
    users.fit(flat, lengths)
    expected = users.scores(histories, lengths_q)
    monkeypatch.setattr(user_cf, "PAIRS_PER_CHUNK", 40 * 2)  # two histories at a time
    torch.testing.assert_close(users.scores(histories, lengths_q), expected)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each family trained through the entry point on the same small data set."""
    tmp = tmp_path_factory.mktemp("cf")
    seq = write_sequence_dir(tmp / "seq", users=80)
    out = {}
    for family in CF:
        config = _config(tmp / f"{family}.json", family)
        assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp / family)]) == 0
        out[family] = tmp / family
    return seq, out


def _config(path: Path, family: str, **model) -> Path:
    config = json.loads(tiny_config(path).read_text())
    config["model"].update(family=family, neighbors=20, **model)
    path.write_text(json.dumps(config))
    return path


def test_item_cf_scores_the_same_by_sparse_product_and_by_scatter(tmp_path):
    # CPU scores by one scipy product; a GPU adds neighbour rows in place (scattered_scores).
    seq_dir = write_sequence_dir(tmp_path / "seq", users=40)
    data = SequenceDataModule(seq_dir, max_len=8)
    data.load()
    net = ItemCF(data.n_items, neighbors=5, recency_decay=0.7, sequential_weight=1.0, sequential_window=3)
    net.fit(*data.train_lists[:2])
    rows = data.eval_rows["test"]
    histories, lengths = rows.history, rows.lengths
    scattered = net.scattered_scores(len(histories), *history_vector(histories, lengths, 0.7))
    assert scattered.abs().sum() > 0
    torch.testing.assert_close(net.item_scores(histories, lengths), scattered)


def test_the_registry_knows_every_closed_form_family():
    assert all(FAMILIES[f].closed_form and FAMILIES[f].family == f for f in CF)


@pytest.mark.parametrize("family", CF)
def test_training_writes_a_model_folder_with_the_neural_metrics(trained, family):
    seq, folders = trained
    folder = folders[family]
    for name in ("model.ckpt", "last.ckpt", "config.json", "items.parquet", "metrics.json", "curve.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["stopped_by"] == "closed_form" and metrics["epochs"] == 1 and metrics["best_epoch"] == 0
    assert [h["epoch"] for h in metrics["history"]] == [0] and metrics["history"][0]["train_loss"] is None
    assert {"recall@20", "mrr@10", "coverage@10", "short/ndcg@10", "masked/mrr@20"} <= metrics["test"].keys()
    # The +1 walk shows as co-reading: far ahead of guessing among 30 items (~0.1 NDCG@10).
    assert metrics["test"]["masked/ndcg@10"] > 0.2
    # Reloaded from the folder alone, the model reproduces its own test and validation metrics.
    network, items = load_model(folder)
    assert network.family == family and network.closed_form
    data = SequenceDataModule(seq, max_len=8)
    data.load()
    recommender = ModelRecommender(network, items, max_len=8)
    assert recommender.evaluate(data.eval_rows["test"]) == metrics["test"]
    gate = model_valid_metrics(folder, seq)
    assert gate == {
        k: v for k, v in metrics["valid"].items() if "/" not in k or k.startswith(("cold_users/", "cold_items/"))
    }


@pytest.mark.parametrize("family", CF)
def test_ranked_lists_and_batch_scores_exclude_seen_items(trained, family):
    seq, folders = trained
    lists = ModelRecommender.from_dir(folders[family], max_len=8).top_k([["i1", "i2", "i3"], ["i30"]], 5)
    assert lists.group_by("user").len().sort("user").rows() == [(0, 5), (1, 5)]
    assert not {"i1", "i2", "i3"} & set(lists.filter(pl.col("user") == 0)["item_id"])
    scores = score_users(folders[family], seq, k=5, chunk_size=7)
    assert scores.get_column("user_id").n_unique() == 80 and scores.height == 80 * 5
    full = pl.read_parquet(seq / "full.parquet").join(pl.read_parquet(seq / "users.parquet"), on="user_idx")
    seen = dict(zip(full["user_id"], full["history"].to_list(), strict=True))
    idx = dict(zip(*pl.read_parquet(seq / "items.parquet").select("item_id", "item_idx"), strict=True))
    assert not any(idx[item] in seen[user] for user, item in scores.select("user_id", "item_id").rows())


@pytest.mark.parametrize("family", CF)
def test_resume_and_warm_start_refit_the_same_model(trained, tmp_path, family):
    seq, folders = trained
    config = _config(tmp_path / "c.json", family)
    own = tmp_path / "own"
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(own)]) == 0
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(own), "--resume"]) == 0
    warm = tmp_path / "warm"
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(warm), "--warm-start", str(own)]) == 0
    first = read_checkpoint(folders[family] / "model.ckpt")["state_dict"]
    for folder in (own, warm):
        again = read_checkpoint(folder / "last.ckpt")["state_dict"]
        assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert json.loads((warm / "metrics.json").read_text())["warm_start"] is None


@pytest.mark.parametrize(
    ("family", "key", "cost"), [("ease", "ease_max_items", "GB"), ("item_cf", "item_cf_max_items", "min")]
)
def test_a_family_refuses_a_catalogue_above_its_limit(trained, tmp_path, capsys, family, key, cost):
    seq, _ = trained
    config = _config(tmp_path / "c.json", family, **{key: 29})
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"model.{key}" in err and f"30 items, more than {key} 29" in err and cost in err
    assert not (tmp_path / "m" / "model.ckpt").exists()


@pytest.mark.parametrize("family", [ItemCF, UserCF, EASE])
def test_items_of_the_history_rank_after_every_other_item_in_their_own_order(family):
    net = family(5, **({"l2": 1.0} if family is EASE else {"neighbors": 10, "shrinkage": 0.0}))
    net.fit(*_sequences([1, 2], [2, 1], [1, 2, 3], [3, 4], [4, 5], [1, 3]))
    history = _history(1, 3)
    similarity = net.item_scores(*history)[0]
    scores = net.scores(*history)[0]
    unread, read = scores[[2, 4, 5]], scores[[1, 3]]
    assert read.max() < unread.min()  # CF recommends the next new item
    assert torch.equal(torch.argsort(unread), torch.argsort(similarity[[2, 4, 5]]))
    assert (read[0] < read[1]) == (similarity[1] < similarity[3])


def test_item_cf_follower_counts_and_asymmetric_cosine():
    flat, lengths = _sequences([1, 2, 3], [2, 3])
    follow = item_cf.followers(flat, lengths, 4, window=2, decay=0.5).toarray()
    assert follow[1, 2] == 1 and follow[1, 3] == 0.5 and follow[2, 3] == 2 and follow[3].sum() == 0
    # 1 has 2 readers, 2 has 1: a = 0.8 divides by 2**0.8 * 1**0.2 where the cosine divides by sqrt(2)
    net = ItemCF(3, neighbors=5, shrinkage=0.0, similarity_alpha=0.8)
    net.fit(*_sequences([1, 2], [1, 3]))
    assert net.item_scores(*_history(1))[0][2] == pytest.approx(1 / 2**0.8)


def test_item_cf_order_similarity_ranks_what_follows_above_what_precedes():
    # 1 is read with 2 and with 3 by as many users, but 2 comes after 1 and 3 before it.
    seqs = [[1, 2]] * 10 + [[3, 1]] * 10
    plain = ItemCF(3, neighbors=5, shrinkage=2.0)
    plain.fit(*_sequences(*seqs))
    scores = plain.item_scores(*_history(1))[0]
    assert scores[2] == scores[3] > 0
    ordered = ItemCF(3, neighbors=5, shrinkage=2.0, sequential_weight=1.0, sequential_window=3, sequential_decay=0.8)
    ordered.fit(*_sequences(*seqs))
    scores = ordered.item_scores(*_history(1))[0]
    cosine = 10 / np.sqrt(20 * 10) * 10 / 12
    assert scores[3] == pytest.approx(cosine) and scores[2] == pytest.approx(2 * cosine)


def test_item_cf_keeps_the_similarity_alpha_best_on_validation(trained):
    _, folders = trained
    metrics = json.loads((folders["item_cf"] / "metrics.json").read_text())
    grid = metrics["grid"]
    assert [g["similarity_alpha"] for g in grid] == [0.5, 0.65, 0.8]
    best = max(grid, key=lambda g: g["valid_ndcg@10"])
    network, _ = load_model(folders["item_cf"])
    assert network.arch["similarity_alpha"] == best["similarity_alpha"]
    assert metrics["valid"]["ndcg@10"] == pytest.approx(best["valid_ndcg@10"])
