"""The run's Prefect artifacts as a person reads them: a wide model x metric table with the change
against served popularity, a warning on a thin margin, figures as files, paste-able queries."""

import subprocess
import sys
from datetime import date

import duckdb

from flows.report import behavior_markdown, margin_warning, metric_table, published_markdown, training_markdown

METRICS = {
    "candidate": {
        "valid": {"users": 50, "recall@10": 0.312345, "ndcg@10": 0.2123456, "short/ndcg@10": 0.9},
        "test": {"users": 50, "recall@10": 0.3, "ndcg@10": 0.2},
    },
    "champion": {"valid": {"users": 50, "recall@10": 0.25, "ndcg@10": 0.18}},
    "popularity": {"users": 50, "recall@10": 0.2, "ndcg@10": 0.15},
}


def test_metric_table_is_one_row_per_model_and_split_with_the_change_against_popularity():
    rows = metric_table(METRICS)
    assert [(r["model"], r["split"]) for r in rows] == [
        ("candidate", "valid"),
        ("candidate", "test"),
        ("champion", "valid"),
        ("popularity", "valid"),
    ]
    candidate = rows[0]
    assert candidate["ndcg@10"] == 0.2123 and candidate["recall@10"] == 0.3123  # rounded to 4 places
    assert candidate["ndcg@10 vs popularity"] == "+41.6%"
    assert rows[2]["ndcg@10 vs popularity"] == "+20.0%"
    assert rows[1]["ndcg@10 vs popularity"] == "n/a"  # popularity is measured on validation only
    assert all("short/ndcg@10" not in r and "users" not in r for r in rows)  # slices stay in metrics.json


def test_with_auto_every_candidate_family_and_the_knn_baseline_has_a_row():
    selection = {
        "lstm": {"selected": False, "valid": {"ndcg@10": 0.2}, "test": {"ndcg@10": 0.19}},
        "sasrec": {"selected": True, "valid": {"ndcg@10": 0.3}, "test": {"ndcg@10": 0.28}},
    }
    candidate = {**METRICS["candidate"], "selection": selection, "baselines": {"last-item knn": {"ndcg@10": 0.12}}}
    rows = metric_table({**METRICS, "candidate": candidate})
    assert [(r["model"], r["split"]) for r in rows] == [
        ("candidate lstm", "valid"),
        ("candidate lstm", "test"),
        ("candidate sasrec (selected)", "valid"),
        ("candidate sasrec (selected)", "test"),
        ("champion", "valid"),
        ("popularity", "valid"),
        ("last-item knn", "valid"),
    ]
    assert rows[2]["ndcg@10 vs popularity"] == "+100.0%" and rows[-1]["ndcg@10 vs popularity"] == "-20.0%"


def test_a_thin_or_negative_margin_over_popularity_is_a_warning():
    assert margin_warning(METRICS) is None
    thin = {**METRICS, "candidate": {"valid": {"ndcg@10": 0.155}}}
    assert "+3.3% against the served popularity" in margin_warning(thin)
    behind = {"champion": {"valid": {"ndcg@10": 0.12}}, "popularity": {"ndcg@10": 0.15}}
    assert "champion's validation NDCG@10 (0.1200) is -20.0%" in margin_warning(behind)


def test_behaviour_figures_are_listed_as_files_not_embedded(tmp_path):
    png = tmp_path / "funnel.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10_000)
    text = behavior_markdown({"markdown": "# Behaviour", "report_html": "r.html", "figures": {"funnel": png}})
    assert f"- funnel: `{png}`" in text and "base64" not in text and len(text) < 500


def test_the_published_artifact_holds_queries_that_run_as_pasted(tmp_path):
    db = tmp_path / "nightrec.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE recommendations AS SELECT DATE '2026-03-11' AS run_date, 'u1' AS user_id, 1 AS rank")
    text = published_markdown({"duckdb": str(db)}, date(2026, 3, 11).isoformat())
    assert "file://" not in text
    command = next(line for line in text.splitlines() if line.startswith("python -c"))
    command = command.replace("python", sys.executable, 1)
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "u1" in out.stdout and "2026-03-11" in out.stdout


def test_the_training_section_says_which_weights_serve():
    trained = {"epochs": 3, "best_epoch": 2, "stopped_by": "early_stopping", "objective": {"loss": "ce"}}
    refit = {"status": "refit", "how": "fine-tuned at lr 0.0003 on every known transition"}
    text = training_markdown({**trained, "refit": {**refit, "transitions_added": 1234, "seconds": 2.5}})
    assert "Served weights: fine-tuned at lr 0.0003" in text and "1,234 held-out transitions" in text
    assert "the gate judged the validated weights" in text
    cut = training_markdown({**trained, "refit": {**refit, "stopped_by": "time_budget"}})
    assert "cut short by the training budget" in cut
    skipped = training_markdown({**trained, "refit": {"status": "skipped", "reason": "train.refit is off"}})
    assert "the validated ones (not refitted: train.refit is off)" in skipped
