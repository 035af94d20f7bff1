"""Stable vocabularies across nights: known ids never move, new ones are appended."""

from datetime import date

import polars as pl
import pytest

from nightrec.config import SequenceConfig
from nightrec.errors import InputError
from nightrec.sequences.build import (
    build_run_sequences,
    build_sequences,
    previous_sequences_dir,
    read_sequences,
    write_sequences,
)
from tests.sequence_fixtures import decode, events

NIGHT1 = [("u1", "a", 0), ("u1", "b", 1), ("u2", "b", 2), ("u2", "c", 3), ("u3", "c", 4), ("u3", "a", 5)]
# Night 2: item "a" and user "u3" are gone, items "d", "e" and user "u4" are new.
NIGHT2 = [("u1", "b", 10), ("u2", "c", 11), ("u4", "d", 12), ("u4", "e", 13), ("u1", "d", 14), ("u2", "b", 15)]


def _ids(frame: pl.DataFrame, key: str, idx: str) -> dict[str, int]:
    return dict(zip(frame[key].to_list(), frame[idx].to_list(), strict=True))


def test_night_two_keeps_every_night_one_id(tmp_path):
    night1 = write_sequences(build_sequences(events(NIGHT1), SequenceConfig()), tmp_path / "night1")
    first = read_sequences(night1)
    second = build_sequences(events(NIGHT2), SequenceConfig(), previous_vocab_dir=night1)

    items1, items2 = _ids(first.items, "item_id", "item_idx"), _ids(second.items, "item_id", "item_idx")
    assert {k: items2[k] for k in items1} == items1  # "a" keeps its id although absent tonight
    assert sorted(items2) == ["a", "b", "c", "d", "e"]
    assert sorted(items2[k] for k in ("d", "e")) == [4, 5]  # appended after night 1's 1..3
    assert sorted(items2.values()) == [1, 2, 3, 4, 5]
    assert dict(zip(second.items["item_id"], second.items["count"], strict=True))["a"] == 0

    users1, users2 = _ids(first.users, "user_id", "user_idx"), _ids(second.users, "user_id", "user_idx")
    assert {k: users2[k] for k in users1} == users1
    assert users2["u4"] == 3 and sorted(users2.values()) == [0, 1, 2, 3]
    # The sequences are written in the merged vocabulary.
    assert decode(second, second.full, "history") == {"u1": ["b", "d"], "u2": ["c", "b"], "u4": ["d", "e"]}
    assert second.stats["vocabulary"]["new_items"] == 2 and second.stats["vocabulary"]["new_users"] == 1


def test_a_model_folder_with_only_items_keeps_item_ids(tmp_path):
    night1 = build_sequences(events(NIGHT1), SequenceConfig())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    night1.items.write_parquet(model_dir / "items.parquet")
    second = build_sequences(events(NIGHT2), SequenceConfig(), previous_vocab_dir=model_dir)
    items1 = _ids(night1.items, "item_id", "item_idx")
    assert {k: v for k, v in _ids(second.items, "item_id", "item_idx").items() if k in items1} == items1
    assert sorted(second.users["user_id"].to_list()) == ["u1", "u2", "u4"]


def test_new_items_below_min_count_are_mapped_out_known_items_stay(tmp_path):
    night1 = write_sequences(build_sequences(events(NIGHT1), SequenceConfig()), tmp_path / "n1")
    # "a" (known) and "e" (new) are seen once tonight; "d" (new) twice.
    rows = [("u1", "a", 0), ("u1", "d", 1), ("u2", "d", 2), ("u2", "e", 3), ("u2", "b", 4), ("u1", "b", 5)]
    second = build_sequences(events(rows), SequenceConfig(min_item_count=2), previous_vocab_dir=night1)
    assert sorted(second.items["item_id"].to_list()) == ["a", "b", "c", "d"]
    assert decode(second, second.full, "history") == {"u1": ["a", "d", "b"], "u2": ["d", "b"]}
    assert second.stats["events_dropped"]["min_item_count"] == 1


def test_min_item_count_without_history_maps_rare_items_out():
    rows = [("u1", "a", 0), ("u1", "rare", 1), ("u1", "b", 2), ("u2", "a", 3), ("u2", "b", 4)]
    seqs = build_sequences(events(rows), SequenceConfig(min_item_count=2))
    assert sorted(seqs.items["item_id"].to_list()) == ["a", "b"]
    assert "rare" not in str(decode(seqs, seqs.full, "history"))


def test_a_corrupt_previous_vocabulary_is_refused(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    pl.DataFrame({"item_id": ["a", "b"], "item_idx": [1, 3], "count": [1, 1]}).write_parquet(bad / "items.parquet")
    with pytest.raises(InputError, match="contiguous"):
        build_sequences(events(NIGHT2), SequenceConfig(), previous_vocab_dir=bad)
    with pytest.raises(InputError, match="previous vocabulary not found"):
        build_sequences(events(NIGHT2), SequenceConfig(), previous_vocab_dir=tmp_path / "missing")


def test_nightly_runs_find_last_nights_vocabulary(tmp_path):
    runs = tmp_path / "runs"
    for day, rows in (("2026-03-01", NIGHT1), ("2026-03-02", NIGHT2)):
        (runs / day).mkdir(parents=True)
        events(rows).write_parquet(runs / day / "clean.parquet")
    assert previous_sequences_dir(runs, date(2026, 3, 1)) is None
    first = build_run_sequences(runs / "2026-03-01" / "clean.parquet", SequenceConfig())
    assert first == runs / "2026-03-01" / "sequences" and (runs / "2026-03-01" / "sequence_stats.json").is_file()
    assert previous_sequences_dir(runs, date(2026, 3, 2)) == first
    second = build_run_sequences(runs / "2026-03-02" / "clean.parquet", SequenceConfig(), first)
    # A rerun of night 2 still builds on night 1, not on its own output.
    assert previous_sequences_dir(runs, date(2026, 3, 2)) == first
    items1 = _ids(read_sequences(first).items, "item_id", "item_idx")
    items2 = _ids(read_sequences(second).items, "item_id", "item_idx")
    assert {k: items2[k] for k in items1} == items1 and len(items2) == 5
