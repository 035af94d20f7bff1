"""Tiny sequence folders in the contract's layout, written directly so model tests need no other stage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

from nightrec.config import NightrecConfig


def write_sequence_dir(
    out: Path, users: int = 60, items: int = 30, length: int = 14, max_len: int = 8, seed: int = 0, item_ids=None
) -> Path:
    """Users walk the catalogue mostly in steps of +1 (learnable), sometimes jumping at random."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(users):
        n = int(rng.integers(length // 2, length + 1))
        seq = [int(rng.integers(1, items + 1))]
        for _ in range(n - 1):
            seq.append(seq[-1] % items + 1 if rng.random() < 0.8 else int(rng.integers(1, items + 1)))
        seqs.append(seq)
    return write_sequences_of(out, seqs, items, max_len, item_ids)


def write_sequences_of(out: Path, seqs: list[list[int]], items: int, max_len: int = 8, item_ids=None) -> Path:
    """A sequences folder of these item_idx sequences: each user's last item is the test target,
    the one before it the validation target, the rest trains."""
    users = len(seqs)
    out.mkdir(parents=True, exist_ok=True)
    ids = item_ids or [f"i{i}" for i in range(1, items + 1)]
    counts = np.bincount(np.concatenate(seqs), minlength=items + 1)[1:]
    pl.DataFrame(
        {"item_id": ids, "item_idx": np.arange(1, items + 1, dtype=np.int32), "count": counts.astype(np.int64)}
    ).write_parquet(out / "items.parquet")
    pl.DataFrame(
        {"user_id": [f"u{u}" for u in range(users)], "user_idx": np.arange(users, dtype=np.int32)}
    ).write_parquet(out / "users.parquet")
    user_idx = pl.Series("user_idx", np.arange(users, dtype=np.int32))
    lists = pl.Series
    pl.DataFrame([user_idx, lists("items", [s[:-2] for s in seqs], dtype=pl.List(pl.Int32))]).write_parquet(
        out / "train.parquet"
    )
    trained = {item for s in seqs for item in s[:-2]}
    for name, cut in (("valid", 2), ("test", 1)):
        pl.DataFrame(
            [
                user_idx,
                lists("history", [s[:-cut][-max_len:] for s in seqs], dtype=pl.List(pl.Int32)),
                lists("target", [s[-cut] for s in seqs], dtype=pl.Int32),
                lists("train_events", [len(s) - 2 for s in seqs], dtype=pl.Int32),
                lists("cold_target", [s[-cut] not in trained for s in seqs], dtype=pl.Boolean),
            ]
        ).write_parquet(out / f"{name}.parquet")
    pl.DataFrame([user_idx, lists("history", [s[-max_len:] for s in seqs], dtype=pl.List(pl.Int32))]).write_parquet(
        out / "full.parquet"
    )
    (out / "sequence_stats.json").write_text(json.dumps({"users": users, "items": items}))
    return out


def tiny_config(path: Path, **train) -> Path:
    """A run config for a very small model, written as JSON the way the flow passes it."""
    config = NightrecConfig.model_validate(
        {
            "sequences": {"max_len": 8},
            "model": {"family": "lstm", "embedding_dim": 8, "hidden_size": 8, "dropout": 0.2},
            "train": {
                "epochs": 3,
                "batch_size": 16,
                "eval_batch_size": 16,
                "lr": 0.01,
                "num_threads": 1,
                "accelerator": "cpu",
                **train,
            },
        }
    )
    path.write_text(config.model_dump_json())
    return path


def assert_padding_never_changes_a_state(net) -> torch.Tensor:
    """A state equals the unpadded one's, however much padding follows; returns two users' states."""
    short = torch.tensor([[3, 7, 1, 0, 0]])
    long = torch.tensor([[3, 7, 1, 0, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(net(short)[0, :3], net(torch.tensor([[3, 7, 1]]))[0], rtol=0, atol=1e-6)
    states = net.user_states(torch.cat([short, torch.tensor([[5, 0, 0, 0, 0]])]), torch.tensor([3, 1]))
    torch.testing.assert_close(states[0], net.user_states(long, torch.tensor([3]))[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(states[1], net.user_states(torch.tensor([[5]]), torch.tensor([1]))[0], rtol=0, atol=1e-6)
    return states


ROOT = Path(__file__).resolve().parents[1]


def train_command(config: Path, seq: Path, out: Path, *extra: str) -> list[str]:
    """``python -m lightning_modules.train`` for these files, as the flow runs it."""
    files = ["--config", str(config), "--sequences", str(seq), "--out", str(out)]
    return [sys.executable, "-m", "lightning_modules.train", *files, *extra]


def train_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_training(config: Path, seq: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the training entry point to the end; the test asserts on what it returns."""
    return subprocess.run(
        train_command(config, seq, out, *extra), cwd=ROOT, env=train_env(), capture_output=True, text=True, timeout=300
    )
