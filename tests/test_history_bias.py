"""The learned history offset: which items each position has read, its place in every score path,
and that training gives it the sign the data asks for (negative when people never come back)."""

import polars as pl
import pytest
import torch

from lightning_modules.families.recurrent import RecurrentNetwork
from lightning_modules.module import NextItemModule, sampled_seen
from lightning_modules.network import prefix_items
from lightning_modules.recommend import ModelRecommender
from nightrec.config import NightrecConfig


def test_prefix_items_pairs_each_kept_position_with_what_it_has_read_once():
    inputs = torch.tensor([[3, 5, 3, 0], [7, 0, 0, 0], [2, 4, 6, 8]])
    keep = torch.tensor([[True, True, True, False], [True, False, False, False], [False, True, False, True]])
    rows, items = prefix_items(inputs, keep)
    got = list(zip(rows.tolist(), items.tolist(), strict=True))
    expected, row = set(), 0
    for b in range(inputs.shape[0]):
        for t in range(inputs.shape[1]):
            if keep[b, t]:
                expected |= {(row, int(i)) for i in inputs[b, : t + 1].tolist() if i > 0}
                row += 1
    # Item 3, read twice by the third position of the first row, is one pair.
    assert got == sorted(expected)


def test_sampled_seen_marks_targets_and_every_copy_of_a_repeated_negative():
    rows, items = torch.tensor([0, 0, 1, 2]), torch.tensor([4, 9, 2, 7])
    targets = torch.tensor([9, 3, 7])
    negatives = torch.tensor([2, 4, 4, 5, 9, 2])
    pos, (cell_rows, cell_slots) = sampled_seen((rows, items), targets, negatives)
    assert pos.tolist() == [1.0, 0.0, 1.0]
    dense = torch.zeros(3, 10)
    dense[rows, items] = 1.0
    marked = torch.zeros(3, len(negatives))
    marked[cell_rows, cell_slots] += 1.0  # each cell once
    assert torch.equal(marked, dense[:, negatives])


def test_scores_shift_history_items_by_exactly_the_learned_offset():
    torch.manual_seed(0)
    net = RecurrentNetwork(n_items=6, embedding_dim=4, hidden_size=4, history_bias=True).eval()
    with torch.no_grad():
        net.history_weight.fill_(-3.0)
    hist, lengths = torch.tensor([[2, 5, 2, 0]]), torch.tensor([3])
    plain = net.user_states(hist, lengths) @ net.item_embeddings().T
    shift = net.scores(hist, lengths) - plain
    assert torch.allclose(shift[0, [2, 5]], torch.tensor([-3.0, -3.0]))
    assert torch.count_nonzero(shift[0, [1, 3, 4, 6]]) == 0
    items = pl.DataFrame({"item_id": [f"i{i}" for i in range(1, 7)], "item_idx": list(range(1, 7))})
    ranked = ModelRecommender(net, items).top_k([["i2", "i5"]], k=6, exclude_seen=False)
    # Unmasked, the offset alone pushes both history items to the bottom of the list.
    assert ranked.get_column("item_id").to_list()[-2:] in (["i2", "i5"], ["i5", "i2"])


def _train_offset(loss: str, sequences: torch.Tensor, steps: int = 80) -> float:
    torch.manual_seed(0)
    config = NightrecConfig.model_validate(
        {
            "model": {"loss": loss, "num_negatives": 6, "label_smoothing": 0.0, "history_bias": True},
            "train": {"lr": 0.05},
        }
    )
    net = RecurrentNetwork(n_items=8, embedding_dim=8, hidden_size=8, dropout=0.0, history_bias=True)
    module = NextItemModule(net, config.model, config.train, item_counts=[1] * 8)
    optimizer = module.configure_optimizers()
    for _ in range(steps):
        optimizer.zero_grad()
        module.training_step({"items": sequences}, 0).backward()
        optimizer.step()
    return float(net.history_weight.detach())


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "sampled_softmax"])
def test_training_learns_explore_or_repeat_from_the_data(loss):
    gen = torch.Generator().manual_seed(1)
    # "Explore" users never return to an item; "repeat" users cycle through the three they started with.
    explore = torch.stack([torch.randperm(8, generator=gen)[:6] + 1 for _ in range(32)])
    repeat = explore[:, [0, 1, 2, 0, 1, 2]]
    assert _train_offset(loss, explore) < -0.3
    assert _train_offset(loss, repeat) > 0.3
