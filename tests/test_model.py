"""The network, the DataModule's tensors, bad sequence input and the ranked-list contract."""

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest
import torch

from lightning_modules.baselines import ItemKNNRecommender, PopularityRecommender
from lightning_modules.data import SequenceDataModule, build_windows, pad_tails
from lightning_modules.families.recurrent import RecurrentNetwork
from lightning_modules.recommend import ModelRecommender
from nightrec.config import PopularityConfig
from nightrec.errors import InputError
from nightrec.fallback.popularity import ServedPopularity
from nightrec.recommender import RankedList
from tests.model_fixtures import write_sequence_dir


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padding_never_changes_a_hidden_state(cell):
    torch.manual_seed(0)
    net = RecurrentNetwork(n_items=20, family=cell, embedding_dim=6, hidden_size=10, num_layers=2).eval()
    short = torch.tensor([[3, 7, 1, 0, 0]])
    long = torch.tensor([[3, 7, 1, 0, 0, 0, 0, 0, 0]])
    # equal up to float rounding: some CPUs' GRU kernels differ in the last bit with the sequence length
    torch.testing.assert_close(net(short)[0, :3], net(torch.tensor([[3, 7, 1]]))[0], rtol=0, atol=1e-6)
    states = net.user_states(torch.cat([short, torch.tensor([[5, 0, 0, 0, 0]])]), torch.tensor([3, 1]))
    assert torch.allclose(states[0], net.user_states(long, torch.tensor([3]))[0])
    assert torch.allclose(states[1], net.user_states(torch.tensor([[5]]), torch.tensor([1]))[0])
    # Contract shapes: user_states [B, d], item_embeddings [n_items + 1, d] (projection 10 -> 6).
    assert states.shape == (2, 6) and net.item_embeddings().shape == (21, 6)


def test_untied_output_table_and_row_zero_is_padding():
    net = RecurrentNetwork(n_items=5, embedding_dim=4, hidden_size=4, tie_weights=False)
    assert net.item_embeddings() is not net.embedding.weight
    assert torch.count_nonzero(net.item_embeddings()[0]) == 0


def test_item_bias_is_folded_into_the_dot_product():
    torch.manual_seed(0)
    net = RecurrentNetwork(n_items=5, embedding_dim=4, hidden_size=4, item_bias=True).eval()
    with torch.no_grad():
        net.bias.copy_(torch.arange(6, dtype=torch.float))
    hist, lengths = torch.tensor([[2, 3, 0]]), torch.tensor([2])
    scores = net.user_states(hist, lengths) @ net.item_embeddings().T
    plain = net.rnn(net.embedding(hist))[0][0, 1] @ net.embedding.weight.T
    assert torch.allclose(scores[0], plain + torch.arange(6, dtype=torch.float), atol=1e-6)
    assert net.user_states(hist, lengths).shape == (1, 5) and net.item_embeddings().shape == (6, 5)


def test_windows_keep_every_target_once_aligned_to_the_end():
    flat = np.array([1, 2, 3, 4, 5, 6, 7, 9, 8])
    lengths = np.array([7, 1, 1])  # the single-item users yield no window
    windows = build_windows(flat, lengths, max_len=3, stride=3)
    expected = [[4, 5, 6, 7], [1, 2, 3, 4]]
    assert windows.tolist() == expected
    targets = windows[:, 1:]
    assert sorted(targets[targets > 0].tolist()) == [2, 3, 4, 5, 6, 7]


def test_short_first_window_is_right_padded_and_stride_overlaps():
    windows = build_windows(np.array([1, 2, 3, 4, 5]), np.array([5]), max_len=3, stride=3)
    assert windows.tolist() == [[2, 3, 4, 5], [1, 2, 0, 0]]
    overlapping = build_windows(np.array([1, 2, 3, 4, 5]), np.array([5]), max_len=3, stride=1)
    assert overlapping.tolist() == [[2, 3, 4, 5], [1, 2, 3, 4], [1, 2, 3, 0], [1, 2, 0, 0]]


def test_pad_tails_keeps_the_most_recent_items():
    padded, lengths = pad_tails(np.array([1, 2, 3, 4, 5, 6]), np.array([4, 2]), width=3)
    assert padded.tolist() == [[2, 3, 4], [5, 6, 0]] and lengths.tolist() == [3, 2]


def test_datamodule_reads_the_contract(tmp_path):
    seq_dir = write_sequence_dir(tmp_path / "seq")
    data = SequenceDataModule(seq_dir, max_len=8)
    data.load()
    valid = data.eval_rows["valid"]
    batch = valid[torch.tensor([0, 3])]
    train = pl.read_parquet(seq_dir / "train.parquet")
    seen_user3 = set(train.get_column("items")[3].to_list()) | set(
        pl.read_parquet(seq_dir / "valid.parquet").get_column("history")[3].to_list()
    )
    assert set(batch["seen_cols"][batch["seen_rows"] == 1].tolist()) == seen_user3
    assert batch["activity"][1] == len(train.get_column("items")[3])
    assert (data.windows[:, 1:] > 0).sum() == (train.get_column("items").list.len() - 1).clip(0).sum()


def test_item_ids_outside_the_vocabulary_are_named(tmp_path):
    seq_dir = write_sequence_dir(tmp_path / "seq", items=30)
    pl.DataFrame(
        {"user_idx": [0], "items": [[1, 2, 31]]}, schema={"user_idx": pl.Int32, "items": pl.List(pl.Int32)}
    ).write_parquet(seq_dir / "train.parquet")
    with pytest.raises(InputError, match=r"train.parquet: column 'items' holds item id 31 outside the vocabulary"):
        SequenceDataModule(seq_dir, max_len=8).load()


def test_empty_training_set_is_an_error(tmp_path):
    seq_dir = write_sequence_dir(tmp_path / "seq")
    pl.DataFrame(
        {"user_idx": [0], "items": [[4]]}, schema={"user_idx": pl.Int32, "items": pl.List(pl.Int32)}
    ).write_parquet(seq_dir / "train.parquet")
    with pytest.raises(InputError, match="empty training set"):
        SequenceDataModule(seq_dir, max_len=8).load()


def test_every_recommender_answers_the_same_ranked_list_contract(tmp_path):
    seq_dir = write_sequence_dir(tmp_path / "seq")
    data = SequenceDataModule(seq_dir, max_len=8)
    data.load()
    flat, lengths, _ = data.train_lists
    net = RecurrentNetwork(n_items=data.n_items, embedding_dim=8, hidden_size=8)
    # the list cold users are served: time-decayed popularity of events over every item
    day = datetime(2026, 3, 10, tzinfo=UTC)
    events = pl.DataFrame(
        [("u", item, "view", day) for item in data.items.get_column("item_id") for _ in range(int(item[1:]))],
        schema=["user_id", "item_id", "event_type", "timestamp"],
        orient="row",
    )
    recommenders = [
        ModelRecommender(net, data.items, max_len=8),
        PopularityRecommender(data.items, flat, max_len=8),
        ItemKNNRecommender(data.items, flat, lengths, max_len=8),
        ServedPopularity(events, date(2026, 3, 11), PopularityConfig()),
    ]
    histories = [["i3", "i4", "i5"], ["i10", "unknown-item"]]
    for rec in recommenders:
        assert isinstance(rec, RankedList), rec.name
        top = rec.top_k(histories, k=5)
        assert top.columns == ["user", "rank", "item_id", "score"]
        for user, hist in enumerate(histories):
            mine = top.filter(pl.col("user") == user)
            assert mine.get_column("rank").to_list() == [1, 2, 3, 4, 5]
            assert not set(mine.get_column("item_id")) & set(hist)
            assert mine.get_column("score").to_list() == sorted(mine.get_column("score").to_list(), reverse=True)
        with_seen = rec.top_k(histories, k=data.n_items, exclude_seen=False)
        assert with_seen.filter(pl.col("user") == 0).height == data.n_items
    # The served list is the decayed popularity order: i30 (30 events) first, unseen items only.
    assert recommenders[3].top_k([["i30"]], k=2).get_column("item_id").to_list() == ["i29", "i28"]
    # The kNN baseline knows that i5 is mostly followed by i6 in this data.
    assert recommenders[2].top_k([["i4", "i5"]], k=1).get_column("item_id").to_list() == ["i6"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss", "smoothing"), [("ce", 0.0), ("ce", 0.1), ("sampled_softmax", 0.0), ("sampled_softmax", 0.2)]
)
def test_both_objectives_learn_a_sequence(loss, smoothing):
    from lightning_modules.module import NextItemModule
    from nightrec.config import NightrecConfig

    torch.manual_seed(0)
    config = NightrecConfig.model_validate(
        {"model": {"loss": loss, "num_negatives": 8, "label_smoothing": smoothing}, "train": {"lr": 0.05}}
    )
    net = RecurrentNetwork(n_items=12, embedding_dim=8, hidden_size=8, dropout=0.0)
    module = NextItemModule(net, config.model, config.train, item_counts=list(range(1, 13)))
    optimizer = module.configure_optimizers()
    batch = {"items": torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])}
    for _ in range(60):
        optimizer.zero_grad()
        loss_value = module.training_step(batch, 0)
        # Smoothing never puts mass on the padding column or on a negative removed as an
        # accidental hit (8 of 12 items drawn: hits are frequent), so the loss stays finite.
        assert torch.isfinite(loss_value)
        loss_value.backward()
        optimizer.step()
    scores = net.user_states(torch.tensor([[1, 2, 3], [7, 8, 9]]), torch.tensor([3, 3])) @ net.item_embeddings().T
    assert scores[:, 1:].argmax(dim=1).add(1).tolist() == [4, 10]


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sampled_softmax_is_cross_entropy_over_its_candidates_with_the_same_smoothing(smoothing):
    from lightning_modules.module import NextItemModule
    from nightrec.config import NightrecConfig

    config = NightrecConfig.model_validate(
        {"model": {"loss": "sampled_softmax", "num_negatives": 6, "label_smoothing": smoothing, "history_bias": False}}
    )
    net = RecurrentNetwork(n_items=12, embedding_dim=8, hidden_size=8, dropout=0.0, history_bias=False)
    # Items 1 and 2 are never drawn as negatives, so targets 1 and 2 meet no accidental hit.
    module = NextItemModule(net, config.model, config.train, item_counts=[0, 0, *range(1, 11)])
    hidden, targets = torch.randn(2, net.item_embeddings().shape[1]), torch.tensor([1, 2])
    torch.manual_seed(3)
    losses, _ = module._sampled_softmax(hidden, targets)
    torch.manual_seed(3)
    negatives = torch.multinomial(module.log_q.exp(), 6, replacement=True)
    candidates = torch.cat([targets.unsqueeze(1), negatives.expand(2, -1)], dim=1)
    logits = (hidden.unsqueeze(1) * net.item_embeddings()[candidates]).sum(-1) - module.log_q[candidates]
    expected = torch.nn.functional.cross_entropy(
        logits, torch.zeros(2, dtype=torch.long), reduction="none", label_smoothing=smoothing
    )
    assert torch.allclose(losses, expected, atol=1e-5)


def _dense_sampled_softmax(module, hidden, targets, negatives, seen, smoothing):
    """The reference: every candidate's logit in one ``[N, 1 + K]`` matrix, built cell by cell."""
    net = module.network
    candidates = torch.cat([targets.unsqueeze(1), negatives.expand(len(targets), -1)], dim=1)
    logits = (hidden.unsqueeze(1) * net.item_embeddings()[candidates]).sum(-1) - module.log_q[candidates]
    read = torch.zeros(len(targets), net.n_items + 1)
    read[seen] = 1.0
    logits = logits + net.history_weight * read.gather(1, candidates)
    hit = torch.zeros_like(logits, dtype=torch.bool)
    hit[:, 1:] = candidates[:, 1:] == targets.unsqueeze(1)
    logits = logits.masked_fill(hit, float("-inf"))
    nll = logits.logsumexp(1) - logits[:, 0]
    mean = logits.where(~hit, 0.0).sum(1) / (~hit).sum(1)
    return (1 - smoothing) * nll + smoothing * (logits.logsumexp(1) - mean)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sampled_softmax_with_history_offset_and_accidental_hits_matches_the_dense_reference(smoothing):
    from lightning_modules.module import NextItemModule
    from lightning_modules.network import prefix_items
    from nightrec.config import NightrecConfig

    config = NightrecConfig.model_validate(
        {"model": {"loss": "sampled_softmax", "num_negatives": 9, "label_smoothing": smoothing}}
    )
    torch.manual_seed(0)
    net = RecurrentNetwork(n_items=7, embedding_dim=8, hidden_size=8, dropout=0.0, history_bias=True)
    with torch.no_grad():
        net.history_weight.fill_(-1.5)
    module = NextItemModule(net, config.model, config.train, item_counts=[5, 1, 4, 2, 3, 1, 2])
    # Repeated items in a history, and 9 draws from 7 items: most rows meet accidental hits.
    inputs = torch.tensor([[3, 5, 3, 2], [7, 1, 0, 0], [2, 2, 6, 4]])
    targets_full = torch.tensor([[5, 3, 2, 6], [1, 4, 0, 0], [2, 6, 4, 1]])
    keep = targets_full > 0
    hidden = torch.randn(int(keep.sum()), 8, requires_grad=True)
    targets, seen = targets_full[keep], prefix_items(inputs, keep)
    torch.manual_seed(7)
    losses, _ = module._sampled_softmax(hidden, targets, seen)
    torch.manual_seed(7)
    negatives = torch.multinomial(module.log_q.exp(), 9, replacement=True)
    expected = _dense_sampled_softmax(module, hidden, targets, negatives, seen, smoothing)
    assert (negatives.unsqueeze(0) == targets.unsqueeze(1)).any(1).sum() >= len(targets) - 2
    assert torch.allclose(losses, expected, atol=1e-5)
    got = torch.autograd.grad(losses.sum(), [hidden, net.history_weight, net.embedding.weight])
    want = torch.autograd.grad(expected.sum(), [hidden, net.history_weight, net.embedding.weight])
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-5)
