"""The serve-time refit: the served weights learn the held-out transitions, the validated ones stay."""

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from lightning_modules.data import SequenceDataModule
from lightning_modules.model_io import load_model, read_checkpoint
from lightning_modules.refit import refit_frame
from lightning_modules.scoring import score_users
from nightrec.config import NightrecConfig
from nightrec.ingest.readers import read_events
from nightrec.sequences.build import build_sequences, write_sequences
from tests.model_fixtures import run_training, tiny_config, write_sequence_dir, write_sequences_of


def _sequences_folder(tmp: Path, lines: list[str], weights: bool) -> Path:
    source = tmp / "seqs.txt"
    source.write_text("\n".join(lines) + "\n")
    config = NightrecConfig().sequences.model_copy(
        update={"split": "leave_last_out", "collapse_repeats": False, "max_len": 3}
    )
    if weights:
        config = config.model_copy(update={"event_weights": {"purchase": 2.0}})
    return write_sequences(build_sequences(read_events(source, "sequences"), config), tmp / "sequences")


@pytest.mark.parametrize("weights", [False, True])
def test_refit_sequences_are_every_users_whole_sequence(tmp_path, weights):
    lines = ["u1 a b c d e f g", "u2 a b c", "u3 c d", "u4 e", "u5 b c d e"]
    folder = _sequences_folder(tmp_path, lines, weights)
    data = SequenceDataModule(folder, max_len=3)
    data.load()
    frame = refit_frame(data)
    users = pl.read_parquet(folder / "users.parquet").select("user_idx", "user_id")
    items = dict(pl.read_parquet(folder / "items.parquet").select("item_idx", "item_id").iter_rows())
    got = {
        user: [items[i] for i in seq]
        for user, seq in frame.join(users, on="user_idx").select("user_id", "items").iter_rows()
    }
    # the training sequences stop two items short of these (one for u3, none for u4's single event)
    assert got == {"u1": list("abcdefg"), "u2": list("abc"), "u3": list("cd"), "u5": list("bcde")}
    if weights:  # appended targets weigh 1, trained positions keep theirs
        for seq, w in frame.select("items", "weights").iter_rows():
            assert len(w) == len(seq) and set(w) <= {1.0, 2.0}


def _train(tmp: Path, seq: Path, out: Path, family: str = "lstm", **train) -> dict:
    config = tiny_config(tmp / f"{out.name}.json", **train)
    settings = json.loads(config.read_text())
    settings["model"]["family"] = family
    config.write_text(json.dumps(settings))
    done = run_training(config, seq, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_a_neural_model_serves_refitted_weights_and_keeps_the_validated_ones(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=80)
    out = tmp_path / "model"
    metrics = _train(tmp_path, seq, out, epochs=2)
    refit = metrics["refit"]
    assert refit["status"] == "refit" and refit["stopped_by"] == "refit_epochs"
    assert refit["steps"] == refit["planned_steps"] > 0
    assert refit["transitions_added"] == 2 * 80  # every user's validation and test target
    validated, served = read_checkpoint(out / "model.ckpt"), read_checkpoint(out / "served.ckpt")
    assert served["hyper_parameters"]["arch"] == validated["hyper_parameters"]["arch"]
    # the gate and warm starts read the validated weights; scoring reads the refitted ones
    network, _ = load_model(out)
    refitted, _ = load_model(out, served=True)
    assert not torch.equal(network.item_embeddings(), refitted.item_embeddings())
    assert torch.equal(load_model(out)[0].item_embeddings(), network.item_embeddings())
    top = score_users(out, seq, k=3)
    histories = pl.read_parquet(seq / "full.parquet").sort("user_idx")
    first = histories.get_column("history")[0].to_list()
    expected = refitted.scores(torch.tensor([first]), torch.tensor([len(first)]))[0, 1:].topk(1).indices + 1
    assert top.filter(pl.col("user_id") == "u0").sort("rank")["item_id"][0] == f"i{int(expected)}"


@pytest.mark.slow
def test_the_refit_never_passes_the_training_budget(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=80)
    out = tmp_path / "model"
    metrics = _train(tmp_path, seq, out, epochs=50, max_minutes=0.002)  # spent inside the first epoch
    assert metrics["stopped_by"] == "time_budget"
    assert metrics["refit"] == {"status": "skipped", "reason": "no time left of the training budget"}
    assert not (out / "served.ckpt").exists()
    assert score_users(out, seq, k=3).height == 3 * 80  # the validated weights serve


@pytest.mark.slow
def test_a_closed_form_model_refits_on_the_held_out_transitions(tmp_path):
    # x -> y happens only as some users' validation -> test transition: training never sees it
    seqs = [[1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7]] * 10 + [[5, 6, 7, 3, 8, 9]] * 6
    seq = write_sequences_of(tmp_path / "seq", seqs, items=9, max_len=4)
    out = tmp_path / "model"
    metrics = _train(tmp_path, seq, out, family="item_cf", epochs=1)
    assert metrics["stopped_by"] == "closed_form" and metrics["refit"]["status"] == "refit"
    history = torch.tensor([[8]])
    validated = load_model(out)[0].scores(history, torch.tensor([1]))[0]
    served = load_model(out, served=True)[0].scores(history, torch.tensor([1]))[0]
    assert validated[9] <= 0 < served[9]  # item 9 follows item 8 only in the held-out targets
    assert int(served[1:].argmax()) + 1 == 9


@pytest.mark.slow
def test_refit_off_serves_the_validated_weights(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=40)
    out = tmp_path / "model"
    metrics = _train(tmp_path, seq, out, epochs=1, refit=False)
    assert metrics["refit"] == {"status": "skipped", "reason": "train.refit is off"}
    assert not (out / "served.ckpt").exists()


@pytest.mark.integration
def test_the_refit_runs_under_ddp_and_is_written_once(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=81)
    out = tmp_path / "model"
    metrics = _train(tmp_path, seq, out, epochs=1, devices=2, strategy="ddp")
    assert metrics["settings"]["world_size"] == 2
    refit = metrics["refit"]
    assert refit["status"] == "refit" and refit["steps"] == refit["planned_steps"] > 0
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["last.ckpt", "model.ckpt", "served.ckpt"]
    assert score_users(out, seq, k=2).height == 2 * 81
