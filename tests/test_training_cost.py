"""Training cost that follows the data: length-bucketed batches, the ``loss: auto`` objective and
the ``train.max_minutes`` time budget."""

import json
import time

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_modules.batching import LengthBuckets
from lightning_modules.data import SequenceDataModule
from lightning_modules.model_io import read_checkpoint
from lightning_modules.train import fit, main
from nightrec.config import NightrecConfig
from tests.model_fixtures import write_sequence_dir


def _tiny(**sections) -> NightrecConfig:
    base = {
        "sequences": {"max_len": 8},
        "model": {"family": "lstm", "embedding_dim": 8, "hidden_size": 8, "num_negatives": 16},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 64, "num_threads": 1, "accelerator": "cpu"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return NightrecConfig.model_validate(base)


def test_length_buckets_give_every_rank_as_many_disjoint_batches_within_the_budget():
    rng = np.random.default_rng(0)
    # shop-like lengths: most windows short, a long tail at the full width
    lengths = np.concatenate([rng.integers(2, 10, size=900), np.full(100, 51)])
    budget = 16 * 51
    for world in (1, 2):
        shards = [LengthBuckets(lengths, budget, seed=3, rank=r, world=world) for r in range(world)]
        for sampler in shards:
            sampler.set_epoch(5)
        batches = [list(s) for s in shards]
        assert len({len(b) for b in batches}) == 1  # DDP ranks run the same number of steps
        assert all(len(b) == len(s) for b, s in zip(batches, shards, strict=True))
        seen = np.concatenate([idx.numpy() for shard in batches for idx in shard])
        assert len(seen) == len(set(seen.tolist()))  # no window twice
        assert len(seen) >= len(lengths) - (world - 1) * budget  # at most world - 1 batches dropped
        for shard in batches:
            for idx in shard:
                assert len(idx) == 1 or len(idx) * lengths[idx.numpy()].max() <= budget
    # a new epoch reshuffles which windows share a batch
    one = LengthBuckets(lengths, budget, seed=3)
    first = [b.tolist() for b in one]
    one.set_epoch(1)
    assert [b.tolist() for b in one] != first


def test_a_bucketed_epoch_pays_for_real_positions_not_padding(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=300, length=6, max_len=50)

    def positions(bucket: bool) -> tuple[int, int]:
        data = SequenceDataModule(seq, max_len=50, batch_size=2, bucket_by_length=bucket)  # 102 positions
        data.load()
        batches = list(data.train_dataloader())
        paid = sum(b["items"].numel() for b in batches)
        real = sum(int((b["items"] > 0).sum()) for b in batches)
        return paid, real

    paid, real = positions(bucket=True)
    windows = _windows(seq)
    assert real == int((windows > 0).sum())  # every training item is still trained
    assert paid <= 1.1 * real
    assert windows.numel() >= 5 * real  # what full-width windows would cost on these short histories


def _windows(seq) -> torch.Tensor:
    data = SequenceDataModule(seq, max_len=50)
    data.load()
    return data.windows


@pytest.mark.slow
@pytest.mark.parametrize(("threshold", "expected"), [(30, "ce"), (29, "sampled_softmax")])
def test_loss_auto_picks_each_objective_on_either_side_of_the_threshold(tmp_path, capsys, threshold, expected):
    seq = write_sequence_dir(tmp_path / "seq", items=30)
    config = _tiny(model={"loss": "auto", "sampled_softmax_above": threshold})
    (tmp_path / "config.json").write_text(config.model_dump_json())
    argv = ["--config", str(tmp_path / "config.json"), "--sequences", str(seq), "--out", str(tmp_path / "model")]
    assert main(argv) == 0
    comparison = "<=" if expected == "ce" else ">"
    assert f"objective: {expected} (auto: 30 items {comparison} {threshold})" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["objective"]["loss"] == expected


class SlowEpochs(Callback):
    """Makes each epoch last at least ``seconds``, so a time budget ends training after a few."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.monotonic()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            time.sleep(max(0.0, self.seconds - (time.monotonic() - self.started)))


@pytest.mark.slow
def test_the_budget_ends_training_between_whole_epochs_keeps_the_best_and_a_warm_start_has_its_own(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=80)
    config = _tiny(train={"epochs": 1000, "patience": 1000, "max_minutes": 4.5 / 60, "batch_size": 8})
    metrics = fit(config, seq, tmp_path / "model", callbacks=[SlowEpochs(1.0)])
    assert metrics["stopped_by"] == "time_budget"
    data = SequenceDataModule(seq, max_len=8, batch_size=8)
    data.load()
    steps_per_epoch = len(data.train_dataloader())
    assert steps_per_epoch > 1
    # no last partial epoch (nor its extra validation): the budget stopped at an epoch boundary
    assert read_checkpoint(tmp_path / "model" / "last.ckpt")["global_step"] == metrics["epochs"] * steps_per_epoch
    best = max(metrics["history"], key=lambda h: h["valid"]["ndcg@10"])
    assert metrics["best_epoch"] == best["epoch"]
    # the best epoch's weights are kept and published, not the last one's
    assert read_checkpoint(tmp_path / "model" / "model.ckpt")["epoch"] == best["epoch"]
    # a warm-started night trains under train.warm_start_max_minutes, not max_minutes
    config.train.warm_start_max_minutes = 2.5 / 60
    warm = fit(config, seq, tmp_path / "warm", warm_start_dir=tmp_path / "model", callbacks=[SlowEpochs(1.0)])
    assert warm["max_minutes"] == config.train.warm_start_max_minutes
    assert warm["stopped_by"] == "time_budget" and warm["epochs"] < metrics["epochs"]


class SlowSteps(Callback):
    """Each training step lasts ``step_s``; each scored evaluation batch ``eval_s`` more."""

    def __init__(self, step_s: float, eval_s: float):
        self.step_s, self.eval_s = step_s, eval_s

    def setup(self, trainer, module, stage) -> None:
        score = module.score
        module.score = lambda batch: (time.sleep(self.eval_s), score(batch))[1]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        time.sleep(self.step_s)


@pytest.mark.slow
def test_an_epoch_longer_than_the_budget_stops_inside_it_leaving_time_for_its_evaluation(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=80)
    config = _tiny(train={"epochs": 5, "patience": 5, "max_minutes": 2.0 / 60, "batch_size": 8, "eval_batch_size": 8})
    steps = {}
    for name, eval_s in (("quick", 0.0), ("slow", 0.1)):
        metrics = fit(config, seq, tmp_path / name, callbacks=[SlowSteps(0.3, eval_s)])
        assert metrics["stopped_by"] == "time_budget" and metrics["epochs"] == 1
        # the weights reached inside the epoch were validated, kept, tested and published
        assert (tmp_path / name / "model.ckpt").is_file() and metrics["test"]["users"] == 80
        steps[name] = read_checkpoint(tmp_path / name / "last.ckpt")["global_step"]
    data = SequenceDataModule(seq, max_len=8, batch_size=8)
    data.load()
    assert steps["quick"] < len(data.train_dataloader())  # stopped inside the first epoch (12 steps, 3.6 s)
    # 10 validation batches of 0.1 s: the slow run keeps ~2 s for its validation and test
    assert steps["slow"] <= steps["quick"] - 3


@pytest.mark.slow
def test_validation_and_the_champions_judge_rank_the_same_fixed_sample_of_users(tmp_path):
    from lightning_modules.evaluate import model_valid_metrics

    seq = write_sequence_dir(tmp_path / "seq", users=120)
    config = _tiny(train={"epochs": 2, "eval_users": 50})
    metrics = fit(config, seq, tmp_path / "model")
    assert metrics["valid"]["users"] == 50 and metrics["test"]["users"] == 50
    judged = model_valid_metrics(tmp_path / "model", seq, eval_users=50)
    assert judged["users"] == 50
    assert judged["ndcg@10"] == pytest.approx(metrics["valid"]["ndcg@10"], abs=1e-6)
    # the same users for valid and test, and the same ones again on another read
    data = SequenceDataModule(seq, max_len=8, eval_users=50)
    data.load()
    again = SequenceDataModule(seq, max_len=8, eval_users=50)
    again.load()
    assert torch.equal(data.eval_rows["valid"].target, again.eval_rows["valid"].target)
    assert model_valid_metrics(tmp_path / "model", seq)["users"] == 120  # None: every user


@pytest.mark.integration
@pytest.mark.slow
def test_a_night_whose_training_hits_the_budget_publishes_that_model_and_says_so(
    prefect_harness, demo_events, tmp_path
):
    from flows.report import build_report
    from tests.flow_fixtures import latest_table, run_night, small_config

    events, _ = demo_events
    config = small_config(tmp_path / "data", events, min_history=3)
    config.train.epochs, config.train.patience, config.train.max_minutes = 1000, 1000, 0.5 / 60
    state = run_night(config)
    assert state.is_completed(), state.message
    summary = state.result()
    candidate = summary["metrics"]["candidate"]
    assert candidate["stopped_by"] == "time_budget" and candidate["epochs"] < 1000
    table = latest_table(config)
    model_rows = table.filter(table["source"] == "model")
    assert model_rows.height > 0
    assert model_rows["model_version"].unique().to_list() == [summary["model_version"]]
    assert "time budget (train.max_minutes; train.warm_start_max_minutes when warm-started) ended training" in (
        build_report(summary)
    )
