"""The training entry point: outputs, resume after a kill, warm start, and clear errors."""

import json
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import torch

from lightning_modules.data import SequenceDataModule
from lightning_modules.families.recurrent import RecurrentNetwork
from lightning_modules.model_io import load_model, read_checkpoint, warm_start
from lightning_modules.recommend import ModelRecommender
from lightning_modules.train import main
from nightrec.progress import parse_progress
from tests.model_fixtures import tiny_config, train_command, train_env, write_sequence_dir

ROOT = Path(__file__).resolve().parents[1]


pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run of the entry point on a small learnable data set."""
    tmp = tmp_path_factory.mktemp("train")
    seq = write_sequence_dir(tmp / "seq", users=120)
    config = tiny_config(tmp / "config.json", epochs=4, ema_decay=0.8)
    done = subprocess.run(
        train_command(config, seq, tmp / "model"),
        cwd=ROOT,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, seq, config, done.stdout


def test_entry_point_writes_the_model_folder(trained):
    tmp, _, _, stdout = trained
    model_dir = tmp / "model"
    for name in ("model.ckpt", "last.ckpt", "config.json", "items.parquet", "metrics.json", "curve.png"):
        assert (model_dir / name).is_file(), name
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 4 and 0 <= metrics["best_epoch"] < 4
    assert Path(metrics["best_checkpoint"]) == (model_dir / "model.ckpt").resolve()
    best = max(h["valid"]["ndcg@10"] for h in metrics["history"])
    assert metrics["valid"]["ndcg@10"] == best
    events = [e for e in map(parse_progress, stdout.splitlines()) if e is not None]
    assert any(e["event"] == "epoch" and e["epoch"] == 3 and e["loss"] > 0 for e in events)
    assert events[-1]["event"] == "done" and "ndcg@10" in events[-1]["test"]
    # The +1 walk is learnable: the model is far ahead of guessing among 30 items.
    assert metrics["test"]["ndcg@10"] > 0.3 and metrics["test"]["masked/ndcg@10"] > 0.3
    assert {"recall@20", "mrr@10", "coverage@10", "short/ndcg@10", "masked/mrr@20"} <= metrics["test"].keys()


def test_load_model_needs_only_the_folder_and_reproduces_test_metrics(trained):
    tmp, seq, _, _ = trained
    network, items = load_model(tmp / "model")
    assert items.get_column("item_id").to_list()[:2] == ["i1", "i2"]
    assert network.item_embeddings().shape == (31, 8)
    data = SequenceDataModule(seq, max_len=8)
    data.load()
    metrics = json.loads((tmp / "model" / "metrics.json").read_text())
    recommender = ModelRecommender(network, items, max_len=8)
    assert recommender.evaluate(data.eval_rows["test"], batch_size=7) == metrics["test"]
    # model.ckpt holds the moving average that was validated at the best epoch, not the live weights.
    assert recommender.evaluate(data.eval_rows["valid"]) == metrics["valid"]
    ckpt = read_checkpoint(tmp / "model" / "model.ckpt")
    live = ckpt["current_model_state"]
    assert any(not torch.equal(live[k], v) for k, v in ckpt["state_dict"].items())


def test_checkpoints_from_before_lightning_averaging_still_load(trained, tmp_path):
    """Published models kept the average under ``ema.`` beside the live ``network.`` weights."""
    tmp, _, _, _ = trained
    old_dir = tmp_path / "old"
    shutil.copytree(tmp / "model", old_dir)
    ckpt = read_checkpoint(old_dir / "model.ckpt")
    average = {k.replace("network.", "ema.", 1): v for k, v in ckpt["state_dict"].items()}
    ckpt["state_dict"] = ckpt.pop("current_model_state") | average
    del ckpt["averaging_state"]
    torch.save(ckpt, old_dir / "model.ckpt")

    new_net, items = load_model(tmp / "model")
    old_net, _ = load_model(old_dir)
    for (name, new), old in zip(new_net.state_dict().items(), old_net.state_dict().values(), strict=True):
        assert torch.equal(new, old), name
    warm_new, warm_old = (RecurrentNetwork.from_arch(new_net.arch) for _ in range(2))
    warm_old.load_state_dict(warm_new.state_dict())
    assert warm_start(warm_new, items, tmp / "model") == warm_start(warm_old, items, old_dir)
    for (name, new), old in zip(warm_new.state_dict().items(), warm_old.state_dict().values(), strict=True):
        assert torch.equal(new, old), name


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=200, length=16)
    config = tiny_config(tmp_path / "config.json", epochs=3, batch_size=4, patience=10)
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "straight")]) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        train_command(config, seq, killed),
        cwd=ROOT,
        env=train_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stdout:
            event = parse_progress(line.strip())
            if event is not None and event["event"] == "epoch" and event["epoch"] == 0:
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode != 0, "the run finished before it could be killed"
    assert read_checkpoint(killed / "last.ckpt")["epoch"] == 0  # saved at the end of epoch 0, nothing later

    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(killed), "--resume"]) == 0
    straight, resumed = (read_checkpoint(out / "last.ckpt") for out in (tmp_path / "straight", killed))
    # Both the moving average (state_dict) and the live weights training continues from.
    for key in ("state_dict", "current_model_state"):
        assert straight[key].keys() == resumed[key].keys()
        for name in straight[key]:
            assert torch.equal(straight[key][name], resumed[key][name]), (key, name)
    assert int(straight["averaging_state"]["n_averaged"]) == int(resumed["averaging_state"]["n_averaged"])
    history = json.loads((killed / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]


def test_warm_start_keeps_known_rows_and_appends_new_items(trained, tmp_path):
    tmp, _, _, _ = trained
    old_net, old_items = load_model(tmp / "model")
    # New vocabulary: the old items in a different order, plus five new ones at the end.
    ids = [f"i{i}" for i in range(30, 0, -1)] + [f"new{i}" for i in range(5)]
    seq = write_sequence_dir(tmp_path / "seq", items=35, item_ids=ids)
    items = pl.read_parquet(seq / "items.parquet")
    # The same architecture as the trained model (whatever the config defaults are), 35 items.
    net = RecurrentNetwork.from_arch({**old_net.arch, "n_items": 35})
    fresh = net.item_embeddings().detach().clone()
    assert warm_start(net, items, tmp / "model") == {"kept_items": 30, "new_items": 5}
    old_rows = dict(zip(old_items.get_column("item_id"), old_net.item_embeddings().detach()[1:], strict=True))
    new_rows = net.item_embeddings().detach()
    for idx, item_id in zip(items.get_column("item_idx"), items.get_column("item_id"), strict=True):
        expected = old_rows[item_id] if item_id in old_rows else fresh[idx]
        assert torch.equal(new_rows[idx], expected), item_id
    assert torch.equal(net.rnn.weight_hh_l0, old_net.rnn.weight_hh_l0)
    # And through the entry point: one epoch from the warm start trains and scores 35 items.
    cfg = tiny_config(tmp_path / "c.json", epochs=1)
    assert (
        main(
            [
                "--config",
                str(cfg),
                "--sequences",
                str(seq),
                "--out",
                str(tmp_path / "m"),
                "--warm-start",
                str(tmp / "model"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["warm_start"] == {"kept_items": 30, "new_items": 5}
    assert load_model(tmp_path / "m")[0].item_embeddings().shape == (36, 8)


def _run(tmp_path: Path, config: Path, seq: Path, *extra: str, capsys) -> tuple[int, str]:
    code = main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "out"), *extra])
    return code, capsys.readouterr().err


def test_incompatible_checkpoint_is_named(trained, tmp_path, capsys):
    tmp, seq, _, _ = trained
    config = tiny_config(tmp_path / "c.json")
    wider = json.loads(config.read_text())
    wider["model"].update(hidden_size=16, embedding_dim=16)
    config.write_text(json.dumps(wider))
    code, err = _run(tmp_path, config, seq, "--warm-start", str(tmp / "model"), capsys=capsys)
    assert code == 2
    assert "model.ckpt: checkpoint from an incompatible config" in err and "hidden_size=8 (config asks for 16)" in err


def test_gpu_on_a_machine_without_one_is_a_config_error(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    _, seq, _, _ = trained
    config = tiny_config(tmp_path / "c.json", accelerator="gpu")
    code, err = _run(tmp_path, config, seq, capsys=capsys)
    assert code == 2 and "train.accelerator: 'gpu' asks for a GPU but this machine has none" in err


def test_missing_inputs_are_clear_errors(trained, tmp_path, capsys):
    _, seq, config, _ = trained
    code, err = _run(tmp_path, config, tmp_path / "nowhere", capsys=capsys)
    assert code == 2 and "nowhere/items.parquet: sequence file not found" in err
    code, err = _run(tmp_path, config, seq, "--resume", capsys=capsys)
    assert code == 2 and "--resume given but there is no checkpoint" in err
