"""Batch scoring: the blocked top-K equals brute force, seen items and padding are masked, and
``score_network`` speaks external ids through the sequences contract."""

import importlib.util
from datetime import date

import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_modules.scoring import score_network, score_users, seen_csr, top_k_scores
from nightrec.config import load_config
from nightrec.fallback.recommend import build_recommendations
from nightrec.schema import ITEM_ID, RANK, SOURCE, USER_ID
from tests.test_popularity import events


def brute_force(users, items, seen, k):
    scores = users @ items.T
    scores[:, 0] = -torch.inf
    for row, s in enumerate(seen):
        scores[row, s] = -torch.inf
    return torch.topk(scores, k, dim=1)


@pytest.mark.parametrize(("n_items", "chunk"), [(30_000, 97), (20_001, 1000), (400, 7)])
def test_top_k_equals_brute_force_with_seen_items_masked(n_items, chunk):
    gen = torch.Generator().manual_seed(n_items)
    items, users = torch.randn(n_items, 16, generator=gen), torch.randn(300, 16, generator=gen)
    seen = [
        torch.randint(1, n_items, (int(torch.randint(0, 60, (1,), generator=gen)),), generator=gen) for _ in range(300)
    ]
    # Make sure some seen items are exactly the ones that would have won.
    best = torch.topk(users @ items.T, 3, dim=1).indices
    seen = [torch.cat([s, best[i, :2]]) for i, s in enumerate(seen)]
    vals, idx = top_k_scores(users, items, seen, 20, chunk_size=chunk)
    ref_vals, ref_idx = brute_force(users, items, seen, 20)
    torch.testing.assert_close(vals, ref_vals)
    assert torch.equal(idx, ref_idx)
    assert not (idx == 0).any()
    for row, s in enumerate(seen):
        assert not set(idx[row].tolist()) & set(s.tolist())


def test_csr_input_and_chunk_size_give_the_same_answer():
    gen = torch.Generator().manual_seed(1)
    items, users = torch.randn(9000, 8, generator=gen), torch.randn(50, 8, generator=gen)
    seen = [torch.arange(1, 1 + i * 3) for i in range(50)]
    crow, col = seen_csr(seen, 50)
    a = top_k_scores(users, items, seen, 10, chunk_size=8)
    b = top_k_scores(users, items, (crow, col), 10, chunk_size=50)
    assert torch.equal(a[1], b[1])


def test_a_user_who_saw_almost_everything_gets_only_what_is_left():
    items, users = torch.randn(3000, 8), torch.randn(2, 8)
    seen = [torch.arange(1, 2997), torch.tensor([], dtype=torch.long)]
    vals, idx = top_k_scores(users, items, seen, 20, chunk_size=2)
    assert sorted(idx[0, :3].tolist()) == [2997, 2998, 2999]
    assert torch.isinf(vals[0, 3:]).all() and torch.isfinite(vals[1]).all()


class TinyGRU(nn.Module):
    """A real (untrained) next-item network answering the contract's two methods."""

    def __init__(self, n_items: int, dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def user_states(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embedding(histories))
        return out[torch.arange(len(lengths)), lengths - 1]

    def item_embeddings(self) -> torch.Tensor:
        return self.embedding.weight


def write_sequences(folder, item_ids, histories: dict[str, list[str]], train: dict[str, list[str]]):
    """A sequences folder in the contract's layout (items, users, train, full)."""
    folder.mkdir(parents=True)
    idx = {item: n + 1 for n, item in enumerate(item_ids)}
    pl.DataFrame(
        {ITEM_ID: item_ids, "item_idx": list(idx.values()), "count": [1] * len(item_ids)},
        schema={ITEM_ID: pl.String, "item_idx": pl.Int32, "count": pl.Int64},
    ).write_parquet(folder / "items.parquet")
    users = list(histories)
    pl.DataFrame(
        {USER_ID: users, "user_idx": list(range(len(users)))}, schema={USER_ID: pl.String, "user_idx": pl.Int32}
    ).write_parquet(folder / "users.parquet")
    as_idx = {u: [idx[i] for i in h] for u, h in histories.items()}
    pl.DataFrame(
        {"user_idx": list(range(len(users))), "history": [as_idx[u] for u in users]},
        schema={"user_idx": pl.Int32, "history": pl.List(pl.Int32)},
    ).write_parquet(folder / "full.parquet")
    pl.DataFrame(
        {"user_idx": [users.index(u) for u in train], "items": [[idx[i] for i in h] for h in train.values()]},
        schema={"user_idx": pl.Int32, "items": pl.List(pl.Int32)},
    ).write_parquet(folder / "train.parquet")
    return idx


def test_score_network_returns_external_ids_without_seen_items(tmp_path):
    catalogue = [f"item-{n}" for n in range(400)]
    histories = {"alice": ["item-1", "item-2", "item-3"], "bob": ["item-7"], "carol": ["item-5", "item-9"]}
    train = {"alice": ["item-100", "item-1", "item-2"], "carol": ["item-5"]}
    seq_idx = write_sequences(tmp_path / "seq", catalogue, histories, train)
    # The model's vocabulary lists the items in another order and lacks item-9.
    model_ids = [c for c in reversed(catalogue) if c != "item-9"]
    model_items = pl.DataFrame({ITEM_ID: model_ids, "item_idx": list(range(1, len(model_ids) + 1))}).cast(
        {"item_idx": pl.Int32}
    )
    net = TinyGRU(len(model_ids))
    out = score_network(net, model_items, tmp_path / "seq", k=10, chunk_size=2)
    assert out.columns == [USER_ID, RANK, ITEM_ID, "score"]
    assert out.group_by(USER_ID).len().sort(USER_ID).rows() == [("alice", 10), ("bob", 10), ("carol", 10)]
    seen = {u: set(histories[u]) | set(train.get(u, [])) for u in histories}
    for user, group in out.group_by(USER_ID):
        assert not set(group[ITEM_ID]) & seen[user[0]]
        assert group[RANK].to_list() == list(range(1, 11))
    # Alice's list is the network's own ranking, translated through the model vocabulary.
    model_idx = {item: n + 1 for n, item in enumerate(model_ids)}
    with torch.no_grad():
        state = net.user_states(torch.tensor([[model_idx[i] for i in histories["alice"]]]), torch.tensor([3]))
        scores = (state @ net.item_embeddings().T)[0]
    scores[0] = -torch.inf
    for item in seen["alice"]:
        scores[model_idx[item]] = -torch.inf
    expected = [model_ids[i - 1] for i in torch.topk(scores, 10).indices.tolist()]
    assert out.filter(pl.col(USER_ID) == "alice")[ITEM_ID].to_list() == expected
    assert seq_idx["item-9"] == 10  # carol's item-9 is unknown to the model: dropped, not shifted


def test_model_lists_flow_into_the_published_table(tmp_path):
    catalogue = [f"i{n:02d}" for n in range(40)]
    histories = {"m1": ["i01", "i02"], "m2": ["i03"]}
    write_sequences(tmp_path / "seq", catalogue, histories, {})
    model_items = pl.DataFrame({ITEM_ID: catalogue, "item_idx": list(range(1, 41))}).cast({"item_idx": pl.Int32})
    scores = score_network(TinyGRU(40), model_items, tmp_path / "seq", k=5)
    log = events(
        [("m1", "i01", "view", 1), ("m1", "i02", "view", 1), ("m2", "i03", "view", 1), ("new", "i04", "view", 1)]
    )
    config = load_config(None, {"data_dir": str(tmp_path), "k": 5}, environ={})
    recs = build_recommendations(log, date(2026, 3, 11), config, scores, "gru@1")
    sources = dict(recs.group_by(USER_ID).agg(pl.col(SOURCE).unique().first()).rows())
    assert sources == {"m1": "model", "m2": "model", "new": "popularity"}
    # "new" saw i04; the window holds only i01..i04, so three eligible items remain for them.
    assert dict(recs.group_by(USER_ID).len().rows()) == {"m1": 5, "m2": 5, "new": 3}


@pytest.mark.integration
@pytest.mark.skipif(
    importlib.util.find_spec("lightning_modules.model_io") is None,
    reason="lightning_modules.model_io (the model issue) is not on this branch",
)
@pytest.mark.slow
def test_a_trained_model_folder_scores_every_known_user(tmp_path, demo_events):
    """The real chain: demo events -> sequences -> a trained GRU folder -> score_users -> the table."""
    from lightning_modules.train import main as train
    from nightrec.ingest.readers import read_events
    from nightrec.sequences.build import build_sequences, write_sequences

    events_dir, _ = demo_events
    log = read_events(str(events_dir), "auto")
    config = load_config(
        None,
        {
            "data_dir": str(tmp_path),
            "k": 10,
            "sequences": {"max_len": 10},
            "model": {"embedding_dim": 8, "hidden_size": 8},
            "train": {"epochs": 1, "batch_size": 64, "num_threads": 1},
            "popularity": {"min_history": 3},
        },
        environ={},
    )
    seq_dir = write_sequences(build_sequences(log, config.sequences), tmp_path / "seq")
    (tmp_path / "config.json").write_text(config.model_dump_json())
    args = ["--config", str(tmp_path / "config.json"), "--sequences", str(seq_dir), "--out", str(tmp_path / "model")]
    assert train(args) == 0
    scores = score_users(tmp_path / "model", seq_dir, k=10, chunk_size=64)
    assert set(scores[USER_ID]) == set(pl.read_parquet(seq_dir / "users.parquet")[USER_ID])
    recs = build_recommendations(log, date(2026, 3, 11), config, scores, "gru@demo")
    assert dict(recs.group_by(USER_ID).len().rows()) == dict.fromkeys(log[USER_ID].unique(), 10)
    assert recs.join(log.select(USER_ID, ITEM_ID), on=[USER_ID, ITEM_ID], how="semi").is_empty()
    counts = log.group_by(USER_ID).len()
    cold = set(counts.filter(pl.col("len") < 3)[USER_ID])
    assert set(recs.filter(pl.col(USER_ID).is_in(list(cold)))[SOURCE]) <= {"popularity"}
    assert "model" in set(recs[SOURCE])


@settings(max_examples=25, deadline=None)
@given(
    n_items=st.integers(2, 9000),
    n_users=st.integers(1, 40),
    k=st.integers(1, 30),
    chunk=st.integers(1, 64),
    integer_scores=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_top_k_matches_brute_force_for_any_shape(n_items, n_users, k, chunk, integer_scores, seed):
    """Values equal brute force (ties may pick either item); every item returned is eligible."""
    gen = torch.Generator().manual_seed(seed)
    items, users = torch.randn(n_items, 4, generator=gen), torch.randn(n_users, 4, generator=gen)
    if integer_scores:  # many exact ties
        items, users = items.round(), users.round()
    seen = [
        torch.randint(1, n_items, (int(torch.randint(0, n_items, (1,), generator=gen)),), generator=gen)
        for _ in range(n_users)
    ]
    vals, idx = top_k_scores(users, items, seen, k, chunk_size=chunk)
    ref_vals, _ = brute_force(users, items, seen, min(k, n_items))
    torch.testing.assert_close(vals, ref_vals)
    scores = users @ items.T
    for row in range(n_users):
        finite = torch.isfinite(vals[row])
        picked = idx[row][finite]
        assert 0 not in picked.tolist() and not set(picked.tolist()) & set(seen[row].tolist())
        assert len(set(picked.tolist())) == len(picked)
        torch.testing.assert_close(scores[row, picked], vals[row][finite])


def test_users_with_fewer_eligible_items_than_k_in_a_large_catalogue():
    """The blocked path: one user has seen all but 3 items, one everything, one nothing."""
    gen = torch.Generator().manual_seed(3)
    items, users = torch.randn(20_000, 8, generator=gen), torch.randn(3, 8, generator=gen)
    everything = torch.arange(1, 20_000)
    seen = [
        everything[~torch.isin(everything, torch.tensor([5, 7_000, 19_999]))],
        everything,
        torch.tensor([], dtype=torch.long),
    ]
    vals, idx = top_k_scores(users, items, seen, 20, chunk_size=3)
    assert sorted(idx[0, :3].tolist()) == [5, 7_000, 19_999] and torch.isinf(vals[0, 3:]).all()
    assert torch.isinf(vals[1]).all()
    _, ref_idx = brute_force(users[2:], items, seen[2:], 20)
    assert torch.equal(idx[2], ref_idx[0])


@pytest.mark.parametrize(
    ("accelerator", "gpu_visible", "expected"),
    [
        ("auto", True, "cuda"),
        ("gpu", True, "cuda"),
        ("cpu", True, "cpu"),
        ("auto", False, "cpu"),
        ("gpu", False, "cpu"),
    ],
)
def test_a_night_scores_on_the_gpu_only_when_training_may_use_one_and_one_is_visible(
    monkeypatch, accelerator, gpu_visible, expected
):
    from lightning_modules.scoring import scoring_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_visible)
    assert scoring_device(accelerator) == expected
