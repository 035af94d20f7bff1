"""The LRU family: parallel scan against the recurrence, causality, padding, contract, training."""

import json

import polars as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lightning_modules.data import SequenceDataModule
from lightning_modules.families import build_network, network_from_arch
from lightning_modules.families.lru import LRUNetwork, complex_scan
from lightning_modules.model_io import load_model, read_checkpoint
from lightning_modules.recommend import ModelRecommender
from lightning_modules.scoring import score_users
from lightning_modules.train import fit, load_run_config, main
from nightrec.config import ModelConfig
from tests.model_fixtures import assert_padding_never_changes_a_state, tiny_config, write_sequence_dir


def test_parallel_scan_equals_the_step_by_step_recurrence():
    torch.manual_seed(0)
    # Moduli up to 0.999 and a non-power-of-two length: the doubling's last step is partial.
    lam = torch.polar(torch.rand(16) * 0.5 + 0.499, torch.rand(16) * 6.28)
    x = torch.randn(3, 37, 16, dtype=torch.complex64)
    h_re, h_im = complex_scan(lam.real, lam.imag, x.real, x.imag)
    h, expected = torch.zeros(3, 16, dtype=torch.complex128), []
    for t in range(37):
        h = lam.to(torch.complex128) * h + x[:, t].to(torch.complex128)
        expected.append(h)
    expected = torch.stack(expected, 1)
    torch.testing.assert_close(torch.complex(h_re, h_im).to(torch.complex128), expected, rtol=0, atol=1e-5)

    # The whole network: step() one item at a time gives what encode() gives for the sequence.
    net = LRUNetwork(n_items=20, embedding_dim=6, hidden_size=10, num_layers=2).eval()
    items = torch.randint(1, 21, (4, 37))
    with torch.no_grad():
        encoded = net.encode(net.embedding(items), items)
        state, steps = net.initial_state(4), []
        for t in range(items.shape[1]):
            state, out = net.step(state, items[:, t])
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), encoded, rtol=0, atol=1e-5)


def test_ring_initialisation_and_normalisation():
    torch.manual_seed(0)
    net = LRUNetwork(n_items=5, embedding_dim=8, hidden_size=8, num_layers=3, r_min=0.8, r_max=0.99)
    for block in net.blocks:
        lam_re, lam_im = block.lru.eigenvalues()
        modulus = torch.sqrt(lam_re**2 + lam_im**2)
        assert modulus.min() >= 0.8 - 1e-6 and modulus.max() <= 0.99 + 1e-6
        assert torch.exp(block.lru.theta_log).max() <= net.arch["max_phase"]
    # gamma = sqrt(1 - |lambda|^2): white noise B u in, a state of the same variance out (long run).
    layer = net.blocks[0].lru
    with torch.no_grad():
        u = torch.randn(1024, 300, 8)  # 0.99^(2 * 300) < 0.003: the zero start is forgotten
        h_re, h_im = complex_scan(*layer.eigenvalues(), *layer.inputs(u))
        bu = layer.B(u).square()
        ratio = (h_re[:, -1].square() + h_im[:, -1].square()).mean(0) / (bu[..., :8] + bu[..., 8:]).mean((0, 1))
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=0.15)
    with pytest.raises(ValueError, match="r_min"):
        LRUNetwork(n_items=5, r_min=0.9, r_max=0.5)


def test_padding_never_changes_a_state():
    torch.manual_seed(0)
    net = LRUNetwork(n_items=20, embedding_dim=6, hidden_size=10, num_layers=2).eval()
    assert_padding_never_changes_a_state(net)


def test_a_state_never_depends_on_later_items():
    torch.manual_seed(0)
    net = LRUNetwork(n_items=20, embedding_dim=8, hidden_size=8, num_layers=2).eval()
    items = torch.randint(1, 21, (2, 12))
    embedded = net.embedding(items).detach().requires_grad_(True)
    # A random read-out: the final LayerNorm makes a plain sum constant, with zero gradient everywhere.
    encoded = net.encode(embedded, items) @ torch.randn(8)
    for t in (0, 5, 11):
        (grad,) = torch.autograd.grad(encoded[:, t].sum(), embedded, retain_graph=True)
        assert torch.count_nonzero(grad[:, t + 1 :]) == 0 and torch.count_nonzero(grad[:, t]) > 0
    # And by value: another future leaves every earlier state as it was.
    other = torch.cat([items[:, :6], torch.randint(1, 21, (2, 6))], dim=1)
    torch.testing.assert_close(net(other)[:, :6], net(items)[:, :6], rtol=0, atol=1e-6)


def test_contract_shapes_and_the_architecture_round_trip():
    torch.manual_seed(0)
    net = LRUNetwork(n_items=20, embedding_dim=6, hidden_size=10, num_layers=2, item_bias=True).eval()
    hist, lengths = torch.tensor([[3, 7, 1], [5, 0, 0]]), torch.tensor([3, 1])
    # projection 10 -> 6, plus the item-bias dimension
    assert net.user_states(hist, lengths).shape == (2, 7) and net.item_embeddings().shape == (21, 7)
    assert net.scores(hist, lengths).shape == (2, 21)
    assert {"num_layers": 2, "state_size": 10, "r_min": 0.8, "r_max": 0.99}.items() <= net.arch.items()
    again = network_from_arch(json.loads(json.dumps(net.arch)))
    assert isinstance(again, LRUNetwork)
    again.load_state_dict(net.state_dict())
    assert torch.equal(again.eval().scores(hist, lengths), net.scores(hist, lengths))
    built = build_network(ModelConfig(family="lru", num_layers=3, embedding_dim=8, hidden_size=8), n_items=9)
    assert isinstance(built, LRUNetwork) and len(built.blocks) == 3 and built.arch["family"] == "lru"


def _two_back(n: int, length: int, n_items: int, generator: torch.Generator) -> torch.Tensor:
    """Two interleaved +1 walks: item t+1 follows item t-1, the current item says nothing about it."""
    seq = list(torch.randint(1, n_items + 1, (2, n), generator=generator))
    while len(seq) < length:
        seq.append(seq[-2] % n_items + 1)
    return torch.stack(seq, 1)


def test_the_recurrence_learns_what_only_its_state_remembers():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    net = LRUNetwork(n_items=20, embedding_dim=16, hidden_size=16, dropout=0.0, hidden_dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        seq = _two_back(64, 10, 20, generator)
        logits = net(seq[:, :-1]) @ net.item_embeddings().T
        loss = F.cross_entropy(logits[:, 1:].reshape(-1, 21), seq[:, 2:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seq = _two_back(500, 10, 20, generator)
    with torch.no_grad():
        predicted = (net.eval()(seq[:, :-1]) @ net.item_embeddings().T)[:, 1:].argmax(-1)
    # Chance is 1/20; without a working recurrence (no memory of item t-1) it stays there.
    assert (predicted == seq[:, 2:]).float().mean() > 0.9


class _Interrupt(Callback):
    """Stops a run at the end of epoch 0, after its checkpoints are written, as a kill would."""

    def on_train_epoch_end(self, trainer, module) -> None:
        raise RuntimeError("interrupted")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run of the training entry point with model.family=lru on the +1 walk."""
    tmp = tmp_path_factory.mktemp("lru")
    seq = write_sequence_dir(tmp / "seq", users=120)
    config = tiny_config(tmp / "config.json", epochs=4, ema_decay=0.8)
    raw = json.loads(config.read_text())
    raw["model"] |= {"family": "lru", "num_layers": 2}
    config.write_text(json.dumps(raw))
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp / "model")]) == 0
    return tmp, seq, config


@pytest.mark.slow
def test_trains_through_the_real_trainer_and_reloads_from_its_folder(trained):
    tmp, seq, _ = trained
    metrics = json.loads((tmp / "model" / "metrics.json").read_text())
    # Next item = previous + 1 four times in five: chance NDCG@10 among 30 items is about 0.15.
    assert metrics["test"]["ndcg@10"] > 0.5 and metrics["test"]["masked/ndcg@10"] > 0.5
    network, items = load_model(tmp / "model")
    assert isinstance(network, LRUNetwork) and network.arch["num_layers"] == 2
    data = SequenceDataModule(seq, max_len=8)
    data.load()
    assert ModelRecommender(network, items, max_len=8).evaluate(data.eval_rows["test"]) == metrics["test"]
    batch = data.eval_rows["test"][torch.arange(5)]
    hist, lengths = batch["history"], batch["lengths"]
    again = ModelRecommender.from_dir(tmp / "model", max_len=8)
    assert torch.equal(again.scores(hist, lengths), network.scores(hist, lengths))


@pytest.mark.slow
def test_answers_the_ranked_list_contract_and_scores_every_user(trained):
    tmp, seq, _ = trained
    histories = [["i3", "i4", "i5"], ["i10", "unknown-item"]]
    top = ModelRecommender.from_dir(tmp / "model", max_len=8).top_k(histories, k=5)
    assert top.columns == ["user", "rank", "item_id", "score"]
    for user, hist in enumerate(histories):
        mine = top.filter(pl.col("user") == user)
        assert mine.get_column("rank").to_list() == [1, 2, 3, 4, 5]
        assert not set(mine.get_column("item_id")) & set(hist)
        assert mine.get_column("score").to_list() == sorted(mine.get_column("score").to_list(), reverse=True)
    assert "i6" in top.filter(pl.col("user") == 0).get_column("item_id")  # the walk's next step

    scores = score_users(tmp / "model", seq, k=5)
    users = pl.read_parquet(seq / "users.parquet")
    assert scores.group_by("user_id").len().sort("user_id").get_column("len").to_list() == [5] * users.height
    seen = pl.concat(
        pl.read_parquet(seq / f"{split}.parquet").select("user_idx", pl.col(column).alias("item_idx"))
        for split, column in (("train", "items"), ("full", "history"))
    ).explode("item_idx")
    seen = seen.join(users, on="user_idx").join(pl.read_parquet(seq / "items.parquet"), on="item_idx")
    assert scores.join(seen, on=["user_id", "item_id"], how="semi").is_empty()


@pytest.mark.slow
def test_resume_from_last_checkpoint_matches_the_uninterrupted_run(trained):
    tmp, seq, config = trained
    out = tmp / "interrupted"
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(load_run_config(config), seq, out, callbacks=[_Interrupt()])
    assert read_checkpoint(out / "last.ckpt")["epoch"] == 0
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(out), "--resume"]) == 0
    straight, resumed = (read_checkpoint(folder / "last.ckpt") for folder in (tmp / "model", out))
    for key in ("state_dict", "current_model_state"):
        assert straight[key].keys() == resumed[key].keys()
        for name in straight[key]:
            assert torch.equal(straight[key][name], resumed[key][name]), (key, name)
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [0, 1, 2, 3]
