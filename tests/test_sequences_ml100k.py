"""Faithfulness to RecBole's protocol on MovieLens-100k (leave-last-out, TO order, no filtering)."""

import csv
import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from nightrec.config import SequenceConfig
from nightrec.ingest.readers import read_events
from nightrec.sequences.build import build_sequences, read_sequences

ML100K = Path(__file__).resolve().parents[1] / "bench-data" / "ml-100k" / "ml-100k.inter"
pytestmark = pytest.mark.skipif(
    not ML100K.is_file(), reason=f"{ML100K} is absent: run `make bench-data` to fetch MovieLens-100k"
)
MAX_LEN = 50


def _reference_targets() -> dict[str, tuple[list[str], str, str]]:
    """Per user from the raw file: (items in time order, valid target, test target).

    Python's sort is stable, so equal timestamps keep the file's order, as in RecBole.
    """
    rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with ML100K.open() as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader)
        u, i, t = (header.index(name) for name in ("user_id:token", "item_id:token", "timestamp:float"))
        for row in reader:
            rows[row[u]].append((int(float(row[t])), row[i]))
    out = {}
    for user, events in rows.items():
        ordered = [item for _, item in sorted(events, key=lambda e: e[0])]
        out[user] = (ordered, ordered[-2], ordered[-1])
    return out


def _external(seqs, frame: pl.DataFrame) -> pl.DataFrame:
    items = seqs.items.select("item_idx", "item_id")
    return (
        frame.join(seqs.users, on="user_idx")
        .join(items.rename({"item_idx": "target", "item_id": "target_id"}), on="target")
        .with_columns(
            pl.col("history")
            .list.eval(pl.element().replace_strict(items["item_idx"], items["item_id"]))
            .alias("history_ids")
        )
    )


def test_ml100k_counts_and_targets_match_recbole():
    seqs = build_sequences(read_events(ML100K), SequenceConfig(max_len=MAX_LEN))
    assert (seqs.stats["users"], seqs.stats["items"], seqs.stats["interactions"]) == (943, 1682, 100_000)
    assert seqs.items.height == 1682 and seqs.users.height == 943
    assert seqs.full.height == 943 and seqs.valid.height == 943 and seqs.test.height == 943

    ref = _reference_targets()
    valid = {r["user_id"]: r for r in _external(seqs, seqs.valid).iter_rows(named=True)}
    test = {r["user_id"]: r for r in _external(seqs, seqs.test).iter_rows(named=True)}
    for user, (ordered, valid_target, test_target) in ref.items():
        assert valid[user]["target_id"] == valid_target, user
        assert test[user]["target_id"] == test_target, user
        assert valid[user]["history_ids"] == ordered[:-2][-MAX_LEN:], user
        # RecBole's test history includes the validation item.
        assert test[user]["history_ids"] == ordered[:-1][-MAX_LEN:], user
    # Training sequences are everything but the two held-out items: 100,000 - 2 * 943 events.
    assert seqs.train.get_column("items").list.len().sum() == 100_000 - 2 * 943


def test_ml100k_ties_follow_file_order():
    """Where a user's last events share a timestamp, the file's order decides the targets."""
    ref = _reference_targets()
    events = read_events(ML100K)
    seqs = build_sequences(events, SequenceConfig())
    last_three = (
        events.with_row_index("row")
        .sort("user_id", "timestamp", "row")
        .group_by("user_id")
        .agg(pl.col("timestamp").tail(3))
    )
    tied = last_three.filter(pl.col("timestamp").list.n_unique() < 3).get_column("user_id").to_list()
    assert len(tied) > 500  # ml-100k has many same-second ratings at the end of a history
    valid = {r["user_id"]: r["target_id"] for r in _external(seqs, seqs.valid).iter_rows(named=True)}
    test = {r["user_id"]: r["target_id"] for r in _external(seqs, seqs.test).iter_rows(named=True)}
    assert [(valid[u], test[u]) for u in tied] == [(ref[u][1], ref[u][2]) for u in tied]


def test_cli_on_ml100k_prints_and_writes_the_counts(tmp_path):
    from flows.cli import app

    out = tmp_path / "seq"
    result = CliRunner().invoke(app, ["sequences", str(ML100K), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "943 users, 1682 items, 100000 interactions" in result.output
    stats = json.loads((out / "sequence_stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    written = read_sequences(out)
    assert written.test.height == 943 and written.items.height == 1682
