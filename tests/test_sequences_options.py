"""Config options of the sequence build: sessions, repeats, event types and weights, temporal split."""

from datetime import timedelta

import polars as pl

from nightrec.config import SequenceConfig
from nightrec.schema import CLICK, PURCHASE, VIEW
from tests.sequence_fixtures import T0, decode, events

from nightrec.sequences.build import build_sequences  # isort: skip


def test_sessions_split_on_gaps_longer_than_the_timeout():
    # u's gaps: 20, 31, 9, 140, 1, 1 minutes -> sessions 0 0 1 1 2 2 2; v has one session.
    rows = [("u", "a", 0), ("u", "b", 20), ("u", "c", 51), ("u", "d", 60), ("u", "e", 200), ("u", "f", 201)]
    rows += [("u", "g", 202), ("v", "a", 0)]
    seqs = build_sequences(events(rows), SequenceConfig(session_timeout_minutes=30))
    assert decode(seqs, seqs.train, "items") == {"u": ["a", "b", "c", "d", "e"]}
    assert seqs.train["sessions"][0].to_list() == [0, 0, 1, 1, 2]
    assert seqs.stats["sessions"]["total"] == 4 and seqs.stats["sessions"]["per_user"]["max"] == 3
    longer = build_sequences(events(rows), SequenceConfig(session_timeout_minutes=60))
    assert longer.train["sessions"][0].to_list() == [0, 0, 0, 0, 1]


def test_sessions_follow_session_id_when_present():
    rows = [("u", "a", 0, CLICK, "s1"), ("u", "b", 90, CLICK, "s1"), ("u", "c", 91, CLICK, "s2"), ("u", "d", 92, CLICK)]
    rows += [("u", "e", 200, CLICK), ("u", "f", 201, CLICK), ("u", "g", 202, CLICK)]
    seqs = build_sequences(events(rows, with_session=True), SequenceConfig(session_timeout_minutes=30))
    # s1 spans a 90-minute gap; s2 starts a session though the gap is 1 minute; without ids the gap decides.
    assert seqs.train["sessions"][0].to_list() == [0, 0, 1, 1, 2]


def test_consecutive_repeats_collapse_only_when_asked():
    rows = [("u", "a", 0), ("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "c", 4), ("u", "c", 5)]
    collapsed = build_sequences(events(rows), SequenceConfig(collapse_repeats=True))
    kept = build_sequences(events(rows), SequenceConfig(collapse_repeats=False))
    assert decode(collapsed, collapsed.full, "history") == {"u": ["a", "b", "a", "c"]}
    assert decode(kept, kept.full, "history") == {"u": ["a", "a", "b", "a", "c", "c"]}
    assert collapsed.stats["events_dropped"]["repeat"] == 2


def test_exact_duplicates_are_dropped_once():
    rows = [("u", "a", 0), ("u", "b", 1), ("u", "a", 0), ("u", "c", 2)]
    seqs = build_sequences(events(rows), SequenceConfig(collapse_repeats=False))
    assert decode(seqs, seqs.full, "history") == {"u": ["a", "b", "c"]}
    assert seqs.stats["events_dropped"]["duplicate"] == 1


def test_event_type_filter_and_weights():
    rows = [
        ("u", "a", 0, VIEW), ("u", "a", 0.1, PURCHASE), ("u", "b", 1, VIEW), ("u", "c", 2, CLICK),
        ("u", "d", 3, VIEW), ("u", "e", 4, CLICK), ("u", "f", 5, PURCHASE),
    ]  # fmt: skip
    only = build_sequences(events(rows), SequenceConfig(event_types=[CLICK, PURCHASE]))
    assert decode(only, only.full, "history") == {"u": ["a", "c", "e", "f"]}
    assert only.stats["events_dropped"]["event_type"] == 3

    weights = {VIEW: 1.0, CLICK: 2.0, PURCHASE: 8.0}
    weighted = build_sequences(events(rows), SequenceConfig(event_weights=weights))
    assert weighted.train.schema["weights"] == pl.List(pl.Float32)
    assert decode(weighted, weighted.train, "items") == {"u": ["a", "b", "c", "d"]}
    # The collapsed view+purchase of "a" keeps the purchase's weight.
    assert weighted.train["weights"][0].to_list() == [8.0, 1.0, 2.0, 1.0]


def test_temporal_split_trains_before_the_cutoff_and_evaluates_the_next_items():
    day = 24 * 60
    rows = [
        ("u", "a", 0), ("u", "b", 10), ("u", "c", 2 * day + 5), ("u", "d", 3 * day + 1), ("u", "e", 3 * day + 2),
        ("v", "x", 1), ("v", "y", 3 * day + 3),  # no validation-window event
        ("w", "p", 2 * day + 1), ("w", "q", 2 * day + 2),  # nothing before the validation cut-off
        ("z", "k", 5),  # nothing after the cut-offs
    ]  # fmt: skip
    cfg = SequenceConfig(split="temporal", temporal_cutoff=T0 + timedelta(days=3), temporal_window_days=1)
    seqs = build_sequences(events(rows), cfg)
    assert decode(seqs, seqs.train, "items") == {"u": ["a", "b"]}
    # w's first window event has nothing before it to predict from: no target.
    assert decode(seqs, seqs.valid, "target") == {"u": "c"}
    assert decode(seqs, seqs.test, "target") == {"u": "d", "v": "y"}
    assert decode(seqs, seqs.test, "history") == {"u": ["a", "b", "c"], "v": ["x"]}
    assert seqs.stats["split"]["cutoffs"] == {
        "valid": (T0 + timedelta(days=2)).isoformat(),
        "test": (T0 + timedelta(days=3)).isoformat(),
    }


def test_temporal_default_cutoff_holds_out_the_last_window():
    day = 24 * 60
    rows = [("u", "a", 0), ("u", "b", 1), ("u", "c", day + 10), ("u", "d", 2 * day + 20)]
    seqs = build_sequences(events(rows), SequenceConfig(split="temporal", temporal_window_days=1))
    # Latest event at day 2 + 20 min: test from day 1 + 20 min, validation from day 0 + 20 min.
    assert decode(seqs, seqs.train, "items") == {"u": ["a", "b"]}
    assert decode(seqs, seqs.valid, "target") == {"u": "c"} and decode(seqs, seqs.test, "target") == {"u": "d"}
