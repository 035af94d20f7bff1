"""DDP on CPU: two gloo processes train, shard disjointly, checkpoint once, and evaluate exactly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_modules.data import SequenceDataModule
from lightning_modules.recommend import ModelRecommender
from tests.model_fixtures import tiny_config, write_sequence_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_ddp_two_processes_match_a_single_process_evaluation(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=81)  # odd row counts: shards of unequal size
    config = tiny_config(
        tmp_path / "config.json", epochs=2, accelerator="cpu", devices=2, strategy="ddp", eval_batch_size=8
    )
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ddp_fixtures.py"), str(config), str(seq), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    shards = [json.loads((out / f"shards_rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world_size"] for s in shards] == [2, 2]
    data = SequenceDataModule(seq, max_len=8)
    data.load()
    for epoch in ("0", "1"):
        batches0, batches1 = (s["epochs"][epoch] for s in shards)
        assert len(batches0) == len(batches1) > 0  # the ranks run the same number of steps
        rank0, rank1 = ([w for batch in batches for w in batch] for batches in (batches0, batches1))
        assert not set(rank0) & set(rank1) and len(set(rank0)) == len(rank0)  # disjoint, no duplicates
        # only the batches that do not divide over the ranks are left out (other ones each epoch)
        largest = max(len(batch) for batch in batches0 + batches1)
        assert len(rank0) + len(rank1) >= len(data.windows) - largest
    assert shards[0]["epochs"]["0"] != shards[0]["epochs"]["1"]  # reshuffled every epoch

    # Written once, by rank 0: one best checkpoint, one last, no rank-suffixed copies.
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["last.ckpt", "model.ckpt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["world_size"] == 2 and metrics["epochs"] == 2

    # The validation metrics computed on two shards equal one process scoring the same weights.
    recommender = ModelRecommender.from_dir(out, max_len=8)
    assert recommender.evaluate(data.eval_rows["valid"]) == metrics["valid"]
    assert recommender.evaluate(data.eval_rows["test"]) == metrics["test"]
