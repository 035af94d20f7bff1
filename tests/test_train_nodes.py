"""train.num_nodes: it reaches Lightning's Trainer as plain DDP under torchrun, only global rank 0
writes, and the combinations that cannot span machines are config errors."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.strategies import DDPStrategy

from flows.preflight import check_one_machine
from lightning_modules.launch import is_rank_zero, node_strategy
from lightning_modules.train import trainer_settings
from nightrec.config import NightrecConfig, TrainConfig, load_config
from nightrec.errors import ConfigError
from nightrec.progress import parse_progress
from tests.model_fixtures import tiny_config, write_sequence_dir

ROOT = Path(__file__).resolve().parents[1]

LAUNCH_VARIABLES = ("TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR")


def _torchrun(monkeypatch, rank: int, nodes: int = 2) -> None:
    """The environment torchrun gives the one process of machine ``rank`` (--nproc-per-node 1)."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = {
        "TORCHELASTIC_RUN_ID": "nightrec-train",
        "RANK": rank,
        "LOCAL_RANK": 0,
        "GROUP_RANK": rank,
        "WORLD_SIZE": nodes,
        "LOCAL_WORLD_SIZE": 1,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": 29500,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))


def _config(**train) -> NightrecConfig:
    return NightrecConfig.model_validate({"train": {"accelerator": "cpu", **train}})


def test_num_nodes_reaches_the_trainer_as_plain_ddp_under_torchrun(monkeypatch):
    _torchrun(monkeypatch, rank=1)
    settings = trainer_settings(_config(num_nodes=2))
    assert settings["num_nodes"] == 2 and settings["strategy"] == "ddp" and settings["devices"] == 1

    trainer = L.Trainer(**settings, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer.num_nodes == 2 and trainer.world_size == 2
    assert type(trainer.strategy) is DDPStrategy  # not ddp_spawn: torchrun started this rank
    assert (trainer.node_rank, trainer.global_rank, trainer.is_global_zero) == (1, 1, False)


def test_only_global_rank_zero_writes_under_torchrun(monkeypatch):
    _torchrun(monkeypatch, rank=1)
    assert not is_rank_zero()  # LOCAL_RANK is 0 on every machine
    _torchrun(monkeypatch, rank=0)
    assert is_rank_zero()


def test_one_machine_keeps_the_configured_strategy(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    settings = trainer_settings(_config(strategy="ddp_spawn", devices=2))
    assert (settings["num_nodes"], settings["strategy"]) == (1, "ddp_spawn")
    assert NightrecConfig().train.num_nodes == 1
    assert is_rank_zero()


def test_a_spawning_strategy_cannot_span_machines():
    launched = {"TORCHELASTIC_RUN_ID": "x"}
    with pytest.raises(ConfigError, match=re.escape("train.strategy: 'ddp_spawn' cannot span machines")):
        node_strategy(TrainConfig(num_nodes=2, strategy="ddp_spawn"), launched)
    assert node_strategy(TrainConfig(num_nodes=2, strategy="ddp"), launched) == "ddp"


def test_several_machines_without_a_launcher_is_a_config_error():
    with pytest.raises(ConfigError, match=re.escape("train.num_nodes=3: start the trainer with torchrun")):
        node_strategy(TrainConfig(num_nodes=3), environ={})
    by_hand = {"MASTER_ADDR": "10.0.0.1", "NODE_RANK": "1"}  # Lightning's own launcher on each machine
    assert node_strategy(TrainConfig(num_nodes=3), by_hand) == "ddp"


def test_a_flow_run_refuses_several_machines_before_any_stage(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    check_one_machine(_config())
    with pytest.raises(ConfigError, match=re.escape("train.num_nodes=2: start the trainer with torchrun")):
        check_one_machine(_config(num_nodes=2))


def test_num_nodes_comes_from_the_environment_and_is_at_least_one():
    assert load_config(environ={"NIGHTREC_TRAIN__NUM_NODES": "4"}).train.num_nodes == 4
    with pytest.raises(ConfigError, match=r"train\.num_nodes"):
        load_config(environ={"NIGHTREC_TRAIN__NUM_NODES": "0"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_command(node_rank: int, port: int, *program: str) -> list[str]:
    """torchrun on machine ``node_rank`` of two, one process each, as infra/k8s-train-job.yaml starts it."""
    where = ["--node-rank", str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port)]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", *where, *program]


@pytest.mark.integration
@pytest.mark.slow
def test_two_torchrun_machines_train_one_model(tmp_path):
    """The command infra/k8s-train-job.yaml runs on each pod, here as two torchrun agents on this machine."""
    seq = write_sequence_dir(tmp_path / "seq", users=60)
    config = tiny_config(tmp_path / "config.json", epochs=2, num_nodes=2, strategy="ddp", devices=1)
    out, port = tmp_path / "model", _free_port()
    train_args = ["--config", str(config), "--sequences", str(seq), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            _torchrun_command(rank, port, "-m", "lightning_modules.train", *train_args),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        (out0, err0), (out1, err1) = (node.communicate(timeout=300) for node in nodes)
    finally:
        for node in nodes:
            node.kill()  # a machine left waiting for its peer after the other failed
    assert [node.returncode for node in nodes] == [0, 0], err0[-3000:] + err1[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["num_nodes"] == "2" and metrics["settings"]["world_size"] == 2
    assert metrics["refit"]["status"] == "refit"
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["last.ckpt", "model.ckpt", "served.ckpt"]
    assert parse_progress(out0.splitlines()[-1])["event"] == "done"
    assert not any(parse_progress(line) for line in out1.splitlines())  # machine 1 trains and stays quiet
