"""Sequence building on hand-written frames: ordering, leave-last-out, contract dtypes, bad input."""

import numpy as np
import polars as pl
import pytest

from nightrec.config import SequenceConfig
from nightrec.errors import InputError
from nightrec.schema import EVENT_SCHEMA
from nightrec.sequences.build import build_sequences, read_sequences, write_sequences
from tests.sequence_fixtures import decode, events

LIST_I32 = pl.List(pl.Int32)


def test_leave_last_out_on_a_small_log():
    ev = events(
        [
            ("alice", "a", 0), ("bob", "x", 1), ("alice", "b", 2), ("alice", "c", 3),
            ("alice", "d", 4), ("bob", "y", 5), ("carol", "z", 6),
        ]
    )  # fmt: skip
    seqs = build_sequences(ev, SequenceConfig(max_len=2))
    assert decode(seqs, seqs.train, "items") == {"alice": ["a", "b"]}  # bob's single train item has no target
    assert decode(seqs, seqs.valid, "target") == {"alice": "c"}
    assert decode(seqs, seqs.valid, "history") == {"alice": ["a", "b"]}
    assert decode(seqs, seqs.test, "target") == {"alice": "d", "bob": "y"}
    assert decode(seqs, seqs.test, "history") == {"alice": ["b", "c"], "bob": ["x"]}  # last max_len=2
    assert decode(seqs, seqs.full, "history") == {"alice": ["c", "d"], "bob": ["x", "y"], "carol": ["z"]}
    assert seqs.stats["split"]["single_event_users"] == 1


def test_out_of_order_input_is_sorted_by_time_and_ties_keep_input_order():
    ev = events([("u", "late", 10), ("u", "first", 0), ("u", "tie1", 5), ("u", "tie2", 5), ("u", "tie0", 5)])
    seqs = build_sequences(ev, SequenceConfig(collapse_repeats=False))
    assert decode(seqs, seqs.full, "history") == {"u": ["first", "tie1", "tie2", "tie0", "late"]}


def test_contract_dtypes_and_padding(tmp_path):
    ev = events([("u1", "a", 0), ("u1", "b", 1), ("u1", "c", 2), ("u2", "a", 0), ("u2", "c", 3)])
    seqs = build_sequences(ev, SequenceConfig())
    assert seqs.items.schema == {"item_id": pl.String, "item_idx": pl.Int32, "count": pl.Int64}
    assert seqs.users.schema == {"user_id": pl.String, "user_idx": pl.Int32}
    assert sorted(seqs.items["item_idx"].to_list()) == [1, 2, 3]  # 0 is padding
    assert sorted(seqs.users["user_idx"].to_list()) == [0, 1]
    assert dict(zip(seqs.items["item_id"], seqs.items["count"], strict=True)) == {"a": 2, "b": 1, "c": 2}
    assert seqs.train.schema["items"] == LIST_I32 and seqs.train.schema["user_idx"] == pl.Int32
    for frame in (seqs.valid, seqs.test):
        assert frame.schema == {
            "user_idx": pl.Int32,
            "history": LIST_I32,
            "target": pl.Int32,
            "train_events": pl.Int32,
            "cold_target": pl.Boolean,
        }
    assert seqs.full.schema == {"user_idx": pl.Int32, "history": LIST_I32}

    back = read_sequences(write_sequences(seqs, tmp_path / "sequences"))
    for name in ("items", "users", "train", "valid", "test", "full"):
        assert back.__getattribute__(name).equals(getattr(seqs, name)), name
    assert back.stats["users"] == 2 and sorted(p.name for p in (tmp_path / "sequences").iterdir()) == [
        "full.parquet", "items.parquet", "sequence_stats.json", "test.parquet",
        "train.parquet", "users.parquet", "valid.parquet",
    ]  # fmt: skip


def test_a_lazy_frame_gives_the_same_result():
    ev = events([("u1", "a", 0), ("u1", "b", 1), ("u1", "c", 2), ("u2", "a", 0), ("u2", "c", 3)])
    eager, lazy = build_sequences(ev, SequenceConfig()), build_sequences(ev.lazy(), SequenceConfig())
    assert eager.test.equals(lazy.test) and eager.train.equals(lazy.train)


@pytest.mark.parametrize("column", ["user_id", "item_id", "timestamp"])
def test_null_key_raises_naming_the_column(column):
    ev = events([("u1", "a", 0), ("u1", "b", 1)])
    ev = ev.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col(column)).alias(column))
    with pytest.raises(InputError, match=f"column '{column}' has 1 null"):
        build_sequences(ev, SequenceConfig())


def test_empty_frame_gives_empty_outputs_and_stats(tmp_path):
    seqs = build_sequences(pl.DataFrame(schema=EVENT_SCHEMA), SequenceConfig())
    for frame in (seqs.items, seqs.users, seqs.train, seqs.valid, seqs.test, seqs.full):
        assert frame.height == 0
    assert seqs.test.schema["history"] == LIST_I32
    assert seqs.stats["users"] == 0 and seqs.stats["interactions"] == 0
    assert seqs.stats["sequence_length"]["count"] == 0
    back = read_sequences(write_sequences(seqs, tmp_path / "s"))
    assert back.full.height == 0 and back.full.schema == seqs.full.schema


def test_code_translation_dense_and_hashed_agree():
    from nightrec.sequences.ordering import code_to_idx

    codes = pl.Series([3, 7, 3, 9], dtype=pl.UInt32)
    small = pl.DataFrame({"c": [3, 7, 9], "i": [1, None, 2]}, schema={"c": pl.UInt32, "i": pl.Int32})
    # Codes far beyond the table size take the hash lookup instead of a dense table.
    big = small.with_columns(pl.col("c") + 50_000_000)
    assert code_to_idx(codes, small, "c", "i").to_list() == [1, 0, 1, 2]
    assert code_to_idx(codes + 50_000_000, big, "c", "i").to_list() == [1, 0, 1, 2]


@pytest.mark.parametrize("shuffled", [False, True])
def test_file_order_breaks_ties_at_scale(tmp_path, shuffled):
    """200k events in 20 distinct seconds, read lazily from Parquet: input order must survive the engine."""
    rng = np.random.default_rng(5)
    n = 200_000
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, 500, n).astype(str),
            "item_id": np.arange(n).astype(str),  # one item per event, so the order is observable
            "event_type": "click",
            "timestamp": np.sort(rng.integers(0, 20, n)) * 1_000_000,
        }
    ).with_columns(pl.from_epoch("timestamp", time_unit="us").dt.replace_time_zone("UTC"))
    if shuffled:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=3)
    frame.write_parquet(tmp_path / "events.parquet")
    seqs = build_sequences(pl.scan_parquet(tmp_path / "events.parquet"), SequenceConfig(max_len=10_000))
    expected = frame.with_row_index("row").sort("user_id", "timestamp", "row").group_by("user_id").agg("item_id")
    external = np.empty(seqs.items.height + 1, dtype=object)
    external[seqs.items["item_idx"].to_numpy()] = seqs.items["item_id"].to_numpy()
    users = dict(zip(seqs.users["user_idx"].to_list(), seqs.users["user_id"].to_list(), strict=True))
    got = {
        users[u]: external[h.to_numpy()].tolist()
        for u, h in zip(seqs.full["user_idx"], seqs.full["history"], strict=True)
    }
    assert got == dict(zip(expected["user_id"].to_list(), expected["item_id"].to_list(), strict=True))


def test_unsorted_input_over_a_huge_time_span_still_sorts_stably():
    """Timestamps 8,000 years apart and 100 users cannot share one 64-bit sort key: the fallback sort runs."""
    rng = np.random.default_rng(11)
    n = 3_000
    year_us = 365 * 86_400 * 1_000_000
    base = -969 * year_us  # the year 1001
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, 100, n).astype(str),
            "item_id": np.arange(n).astype(str),
            "event_type": "click",
            "timestamp": base + rng.choice([0, 4_000 * year_us, 8_000 * year_us], n) + rng.integers(0, 3, n),
        }
    ).with_columns(pl.from_epoch("timestamp", time_unit="us").dt.replace_time_zone("UTC"))
    assert not frame["timestamp"].is_sorted()
    seqs = build_sequences(frame, SequenceConfig(max_len=n))
    names = dict(zip(seqs.items["item_idx"].to_list(), seqs.items["item_id"].to_list(), strict=True))
    users = dict(zip(seqs.users["user_idx"].to_list(), seqs.users["user_id"].to_list(), strict=True))
    got = {
        users[u]: [names[i] for i in h]
        for u, h in zip(seqs.full["user_idx"], seqs.full["history"].to_list(), strict=True)
    }
    expected: dict[str, list[tuple[int, str]]] = {}
    for user, item, ts in zip(frame["user_id"], frame["item_id"], frame["timestamp"].dt.epoch("us"), strict=True):
        expected.setdefault(user, []).append((ts, item))
    assert got == {u: [item for _, item in sorted(evs, key=lambda e: e[0])] for u, evs in expected.items()}
