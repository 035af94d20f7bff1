"""What training learns beyond each sequence's own next item: reversed copies (``train.reversed_copies``)
and item_cf's soft targets (``model.teacher``)."""

import json

import numpy as np
import polars as pl
import pytest
import torch

from lightning_modules.data import SequenceDataModule, reversed_positions
from lightning_modules.families.recurrent import RecurrentNetwork
from lightning_modules.model_io import load_model
from lightning_modules.module import NextItemModule
from lightning_modules.recommend import ModelRecommender
from lightning_modules.teacher import prefix_histories, teacher_hits, teacher_targets
from nightrec.config import NightrecConfig
from tests.model_fixtures import run_training, tiny_config, write_sequence_dir, write_sequences_of


def _windows(data: SequenceDataModule) -> list[list[int]]:
    return sorted([w[w > 0].tolist() for w in data.windows])


def test_reversed_copies_train_every_sequence_backwards_too(tmp_path):
    seqs = [[1, 2, 3, 4, 9, 9], [5, 6, 7, 9, 9], [8, 1, 9, 9]]  # the last two items are valid and test
    seq_dir = write_sequences_of(tmp_path / "seq", seqs, items=9)
    plain = SequenceDataModule(seq_dir, max_len=8)
    plain.load()
    both = SequenceDataModule(seq_dir, max_len=8, reversed_copies=True)
    both.load()
    assert _windows(plain) == [[1, 2, 3, 4], [5, 6, 7], [8, 1]]
    assert _windows(both) == [[1, 2, 3, 4], [1, 8], [4, 3, 2, 1], [5, 6, 7], [7, 6, 5], [8, 1]]
    # Seen items and evaluation rows come from the sequences as read, never the copies.
    assert plain.train_lists[0].tolist() == both.train_lists[0].tolist()
    assert reversed_positions(np.array([3, 0, 1, 2])).tolist() == [2, 1, 0, 3, 5, 4]


def test_reversed_copies_carry_their_event_weights(tmp_path):
    seq_dir = write_sequences_of(tmp_path / "seq", [[1, 2, 3, 9, 9], [4, 5, 9, 9]], items=9)
    train = pl.read_parquet(seq_dir / "train.parquet").with_columns(
        pl.Series("weights", [[1.0, 2.0, 3.0], [4.0, 5.0]], dtype=pl.List(pl.Float32))
    )
    train.write_parquet(seq_dir / "train.parquet")
    data = SequenceDataModule(seq_dir, max_len=8, reversed_copies=True)
    data.load()
    pairs = sorted(
        tuple(zip(w[w > 0].tolist(), x[w > 0].tolist(), strict=True))
        for w, x in zip(data.windows, data.weights, strict=True)
    )
    assert pairs == [
        ((1, 1.0), (2, 2.0), (3, 3.0)),
        ((3, 3.0), (2, 2.0), (1, 1.0)),
        ((4, 4.0), (5, 5.0)),
        ((5, 5.0), (4, 4.0)),
    ]


def test_prefix_histories_end_at_each_position_within_their_sequence():
    histories, lengths = prefix_histories(np.array([1, 2, 3, 4, 5]), np.array([3, 2]), width=2)
    assert histories.tolist() == [[1, 0], [1, 2], [2, 3], [4, 0], [4, 5]]
    assert lengths.tolist() == [1, 2, 2, 1, 2]


def _teacher_config(**model):
    settings = {"sequential_weight": 0.0, "shrinkage": 0.0, "similarity_alpha": [0.5], "teacher": "item_cf"}
    return NightrecConfig.model_validate({"model": {**settings, **model}}).model


def test_a_users_teacher_never_learned_from_that_user():
    # 8 -> 9 is user 0's alone; 1 -> 2 is everyone's. Users alternate between the two folds.
    seqs = [[8, 9, 3]] + [[1, 2, 4 + u % 3] for u in range(1, 12)]
    flat = np.concatenate(seqs)
    lengths = np.array([len(s) for s in seqs])
    items, shares, _ = teacher_targets(_teacher_config(teacher_top_k=3), flat, lengths, n_items=9, width=5)
    assert 9 not in items[0][shares[0] > 0].tolist()  # user 0 at item 8: nobody else read 8
    assert shares[0].sum() == 0
    at_one = 3  # user 1 at item 1: the others read 2 with it most
    assert items[at_one][0] == 2
    assert torch.isclose(shares[at_one][shares[at_one] > 0].sum(), torch.tensor(1.0))
    assert 1 not in items[at_one][shares[at_one] > 0].tolist()  # what the prefix read is never a soft target
    assert 0.0 < teacher_hits(items, flat, lengths) < 1.0


def _module(loss, weight, n_items=12):
    config = NightrecConfig.model_validate(
        {
            "model": {"loss": loss, "num_negatives": 8, "teacher": "item_cf", "teacher_weight": weight},
            "train": {"lr": 0.05},
        }
    )
    torch.manual_seed(0)
    net = RecurrentNetwork(n_items=n_items, embedding_dim=8, hidden_size=8, dropout=0.0, history_bias=True)
    return NextItemModule(net, config.model, config.train, item_counts=list(range(1, n_items + 1)))


def _batch(teacher_item):
    items = torch.tensor([[1, 2, 3, 4, 0], [7, 8, 9, 0, 0]])
    shares = torch.zeros(2, 5, 1)
    shares[items > 0] = 1.0
    return {
        "items": items,
        "teacher_items": torch.full((2, 5, 1), teacher_item),
        "teacher_shares": shares,
    }


def test_without_weight_the_teacher_changes_nothing():
    for loss in ("ce", "sampled_softmax"):
        batch = _batch(teacher_item=11)
        torch.manual_seed(5)
        with_teacher = _module(loss, 0.0).training_step(batch, 0)
        torch.manual_seed(5)
        without = _module(loss, 0.0).training_step({"items": batch["items"]}, 0)
        assert torch.allclose(with_teacher, without)


def test_a_teacher_pulls_every_state_towards_its_items():
    for loss in ("ce", "sampled_softmax"):
        module = _module(loss, 0.5)
        optimizer = module.configure_optimizers()
        for _ in range(80):
            optimizer.zero_grad()
            module.training_step(_batch(teacher_item=11), 0).backward()
            optimizer.step()
        net = module.network
        scores = net.user_states(torch.tensor([[1, 2], [7, 8]]), torch.tensor([2, 2])) @ net.item_embeddings().T
        top2 = scores[:, 1:].topk(2, dim=1).indices.add(1)
        # Each state learns its next item and the teacher's item 11, which no sequence holds.
        assert [sorted(row) for row in top2.tolist()] == [[3, 11], [9, 11]], loss


@pytest.mark.slow
def test_the_entry_point_trains_with_a_teacher_and_reversed_copies(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=120)
    config = tiny_config(tmp_path / "config.json", epochs=3, reversed_copies=True)
    settings = json.loads(config.read_text())
    settings["model"].update(teacher="item_cf", similarity_alpha=[0.5, 0.8], teacher_top_k=5)
    config.write_text(json.dumps(settings))
    done = run_training(config, seq, tmp_path / "model")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    teacher = metrics["teacher"]
    assert teacher["family"] == "item_cf" and teacher["similarity_alpha"] in (0.5, 0.8)
    # The +1 walk: a teacher fitted on the other users still lists most next items.
    assert teacher["next_item_in_top_5"] > 0.5
    assert metrics["test"]["ndcg@10"] > 0.3
    # The soft targets shaped training only: the folder alone reloads the model and its numbers.
    network, items = load_model(tmp_path / "model")
    data = SequenceDataModule(seq, max_len=8)
    data.load()
    assert ModelRecommender(network, items, max_len=8).evaluate(data.eval_rows["test"]) == metrics["test"]


def test_padded_teacher_slots_weigh_nothing_under_both_objectives():
    # A teacher with fewer positive items than teacher_top_k pads its list with item 0 at share 0.
    for loss in ("ce", "sampled_softmax"):
        batch = _batch(teacher_item=11)
        padded = {
            **batch,
            "teacher_items": torch.cat([batch["teacher_items"], torch.zeros_like(batch["teacher_items"])], -1),
        }
        padded["teacher_shares"] = torch.cat([batch["teacher_shares"], torch.zeros_like(batch["teacher_shares"])], -1)
        torch.manual_seed(5)
        short = _module(loss, 0.5).training_step(batch, 0)
        torch.manual_seed(5)
        assert torch.allclose(_module(loss, 0.5).training_step(padded, 0), short), loss
