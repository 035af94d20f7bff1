"""``model.family: auto``: every candidate trained, the best on validation served, reruns keep finished ones."""

import json

import numpy as np
import pytest
import torch

from lightning_modules.model_io import load_model
from lightning_modules.train import main
from nightrec.evaluation.table import metric_table
from tests.model_fixtures import tiny_config, write_sequence_dir, write_sequences_of

pytestmark = [pytest.mark.slow]


def _auto(tmp_path, candidates, **train):
    config = tiny_config(tmp_path / "c.json", **train)
    data = json.loads(config.read_text())
    data["model"].update(family="auto", candidates=candidates)
    config.write_text(json.dumps(data))
    return config


def test_auto_serves_the_candidate_best_on_validation(tmp_path, capsys):
    seq = write_sequence_dir(tmp_path / "seq", users=80)
    config = _auto(tmp_path, ["rnn", "gru"], epochs=2)
    out = tmp_path / "model"
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    selection = metrics["selection"]
    best = max(selection, key=lambda f: selection[f]["valid"]["ndcg@10"])
    assert metrics["family"] == best and selection[best]["selected"]
    assert metrics["valid"] == selection[best]["valid"]
    assert sum(s["selected"] for s in selection.values()) == 1
    # The folder is the winner's model: its family, its weights, nothing else to read.
    network, _ = load_model(out)
    assert network.family == best
    assert json.loads((out / "config.json").read_text())["model"]["family"] == "auto"
    loser = next(f for f in selection if f != best)
    assert not (out / "candidates" / loser / "model.ckpt").exists()  # losers keep their numbers only
    assert (out / "candidates" / loser / "metrics.json").is_file()
    assert 0 <= metrics["baselines"]["last-item knn"]["ndcg@10"] <= 1
    said = capsys.readouterr().out
    assert "auto: training candidate rnn" in said and f"auto: serving {best}" in said

    # A rerun in the same folder (the flow's retry) trains nothing again and serves the same model.
    before = torch.load(out / "model.ckpt", weights_only=True)["state_dict"]
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(out)]) == 0
    assert "auto: training candidate" not in capsys.readouterr().out
    after = torch.load(out / "model.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_each_candidate_gets_a_share_of_the_budget(tmp_path, capsys):
    seq = write_sequence_dir(tmp_path / "seq", users=40)
    config = _auto(tmp_path, ["rnn", "gru", "lstm"], epochs=1, max_minutes=3.0)
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "m")]) == 0
    shares = [
        float(line.split("(")[1].split(" min")[0])
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("auto: training candidate")
    ]
    # The first gets a third of 3 minutes; what a quick candidate leaves passes to the next ones.
    assert len(shares) == 3 and shares[0] == pytest.approx(1.0, abs=0.05)
    assert shares[1] >= shares[0] - 0.05 and shares[2] >= shares[1] - 0.05


def test_auto_skips_a_candidate_that_refuses_the_catalogue_and_says_why(tmp_path, capsys):
    seq = write_sequence_dir(tmp_path / "seq", users=40)
    config = _auto(tmp_path, ["item_cf", "rnn"], epochs=1)
    data = json.loads(config.read_text())
    data["model"]["item_cf_max_items"] = 29  # the catalogue has 30
    config.write_text(json.dumps(data))
    out = tmp_path / "m"
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "auto: skipping candidate item_cf: model.item_cf_max_items" in said
    assert "auto: training candidate item_cf" not in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["family"] == "rnn" and not (out / "candidates" / "item_cf").exists()
    assert (
        metrics["selection"]["item_cf"]
        == {
            "selected": False,
            "skipped": metrics["selection"]["item_cf"]["skipped"],
        }
        and "30 items, more than item_cf_max_items 29" in metrics["selection"]["item_cf"]["skipped"]
    )
    table = metric_table({"candidate": metrics, "popularity": {"ndcg@10": 0.1}})
    assert {row["model"] for row in table} >= {"candidate rnn (selected)"}
    assert not any("item_cf" in row["model"] for row in table)


def test_auto_with_only_refusing_candidates_is_a_configuration_error(tmp_path, capsys):
    seq = write_sequence_dir(tmp_path / "seq", users=20)
    config = _auto(tmp_path, ["item_cf"], epochs=1)
    data = json.loads(config.read_text())
    data["model"]["item_cf_max_items"] = 10
    config.write_text(json.dumps(data))
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "m")]) == 2
    assert "every candidate refuses this catalogue of 30 items" in capsys.readouterr().err


def test_auto_picks_item_cf_where_only_the_set_of_items_carries_signal(tmp_path):
    # Each user reads the items of one taste cluster in random order: what comes next is any unread
    # item of the cluster. item_cf, with the history's items put last, ranks exactly those first
    # (the best any model can do); a GRU trained for one epoch cannot have learnt the clusters yet.
    rng = np.random.default_rng(0)
    clusters, size = 6, 6
    seqs = [
        [int(i) for i in c * size + 1 + rng.permutation(size)[: rng.integers(4, size + 1)]]
        for c in rng.integers(0, clusters, 150)
    ]
    seq = write_sequences_of(tmp_path / "seq", seqs, clusters * size)
    config = _auto(tmp_path, ["gru", "item_cf"], epochs=1)
    assert main(["--config", str(config), "--sequences", str(seq), "--out", str(tmp_path / "m")]) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["family"] == "item_cf"
    assert metrics["selection"]["item_cf"]["valid"]["recall@10"] == 1.0  # every next item ranked in the top 10
    assert load_model(tmp_path / "m")[0].family == "item_cf"
