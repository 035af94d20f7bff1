"""Training logs the way Lightning users expect: ``metrics.csv`` from ``CSVLogger`` in the model
folder, and a run's output that holds its own lines only (no banners, tips or deprecations)."""

import csv
import json

import pytest

from tests.model_fixtures import run_training, tiny_config, write_sequence_dir

pytestmark = [pytest.mark.slow]


def test_metrics_csv_holds_every_epoch_and_the_output_is_quiet(tmp_path):
    seq = write_sequence_dir(tmp_path / "seq", users=40)
    config = tiny_config(tmp_path / "config.json", epochs=2)
    out = tmp_path / "model"
    done = run_training(config, seq, out)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    per_epoch = {int(r["epoch"]): float(r["valid/ndcg@10"]) for r in rows if r.get("valid/ndcg@10")}
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert per_epoch == pytest.approx({h["epoch"]: h["valid"]["ndcg@10"] for h in history}, abs=1e-6)
    assert any(r.get("train/loss") for r in rows), "the training loss is logged per step"
    output = done.stdout + done.stderr
    for noise in ("GPU available", "Tip:", "deprecated", "Restoring states", "`Trainer.fit` stopped"):
        assert noise not in output, noise
