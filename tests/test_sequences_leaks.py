"""Property-based checks that no split leaks, and that the build matches a plain-Python model of it."""

from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nightrec.config import SequenceConfig
from nightrec.sequences.build import build_sequences
from tests.sequence_fixtures import T0, decode, events

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
rows_strategy = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.integers(0, 5), st.integers(0, 40)), max_size=40
)


def _reference(rows, cfg: SequenceConfig, cutoffs=None):
    """The split computed the obvious way, user by user (Python's sort is stable: ties keep input order)."""
    per_user: dict[str, list[tuple[int, str]]] = {}
    seen = set()
    for user, item, minute in rows:
        if (user, item, minute) in seen:  # exact duplicate
            continue
        seen.add((user, item, minute))
        per_user.setdefault(user, []).append((minute, f"i{item}"))
    train, valid, test, full, cut_of = {}, {}, {}, {}, {}
    for user, evs in per_user.items():
        evs = sorted(evs, key=lambda e: e[0])
        if cfg.collapse_repeats:
            evs = [e for k, e in enumerate(evs) if k == 0 or e[1] != evs[k - 1][1]]
        seq = [item for _, item in evs]
        full[user] = seq[-cfg.max_len :]
        if cutoffs is None:
            held = min(2, len(seq) - 1)
            cut, targets = len(seq) - held, {"valid": len(seq) - 2 if held == 2 else None, "test": len(seq) - 1}
        else:
            cut = sum(m < cutoffs[0] for m, _ in evs)
            before_test = sum(m < cutoffs[1] for m, _ in evs)
            targets = {
                "valid": cut if before_test > cut else None,
                "test": before_test if before_test < len(seq) else None,
            }
        cut_of[user] = (cut, seq[:cut])
        if cut >= 2:
            train[user] = seq[:cut]
        for name, out in (("valid", valid), ("test", test)):
            pos = targets[name]
            if pos is not None and pos >= 1:
                out[user] = (seq[:pos][-cfg.max_len :], seq[pos])
    # The slices: training events per user, and targets whose item no user had before the cut-off.
    trained = {item for _, before in cut_of.values() for item in before}
    for out in (valid, test):
        for user, (history, target) in out.items():
            out[user] = (history, target, cut_of[user][0], target not in trained)
    return train, valid, test, full


def _as_rows(rows):
    return [(user, f"i{item}", minute) for user, item, minute in rows]


def _pairs(seqs, frame):
    """``user -> (history, target, train_events, cold_target)`` in external ids."""
    history, users = decode(seqs, frame, "history"), decode(seqs, frame, "target")
    ids = seqs.users.join(frame, on="user_idx").select("user_id", "train_events", "cold_target").rows()
    slices = {user: (n, cold) for user, n, cold in ids}
    return {u: (history[u], t, *slices[u]) for u, t in users.items()}


@SETTINGS
@given(rows=rows_strategy, collapse=st.booleans(), max_len=st.integers(2, 4))
def test_leave_last_out_matches_the_plain_python_model(rows, collapse, max_len):
    cfg = SequenceConfig(max_len=max_len, collapse_repeats=collapse)
    seqs = build_sequences(events(_as_rows(rows)), cfg)
    train, valid, test, full = _reference(rows, cfg)
    assert decode(seqs, seqs.train, "items") == train
    assert _pairs(seqs, seqs.valid) == valid
    assert _pairs(seqs, seqs.test) == test
    assert decode(seqs, seqs.full, "history") == full


@SETTINGS
@given(rows=rows_strategy, collapse=st.booleans(), test_cut=st.integers(0, 45), window=st.integers(1, 20))
# 13 minutes as a fraction of a day must cut at exactly 13 minutes, not a microsecond later.
@example(rows=[("u1", 0, 0), ("u1", 0, 1)], collapse=False, test_cut=14, window=13)
def test_temporal_matches_the_plain_python_model(rows, collapse, test_cut, window):
    cfg = SequenceConfig(
        max_len=3,
        collapse_repeats=collapse,
        split="temporal",
        temporal_cutoff=T0 + timedelta(minutes=test_cut),
        temporal_window_days=window / 1440,
    )
    seqs = build_sequences(events(_as_rows(rows)), cfg)
    train, valid, test, _ = _reference(rows, cfg, cutoffs=(test_cut - window, test_cut))
    assert decode(seqs, seqs.train, "items") == train
    assert _pairs(seqs, seqs.valid) == valid
    assert _pairs(seqs, seqs.test) == test


@SETTINGS
@given(
    rows=st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.integers(0, 30)), max_size=30),
    split=st.sampled_from(["leave_last_out", "temporal"]),
    test_cut=st.integers(5, 30),
)
def test_no_target_is_trained_on_and_no_training_event_is_after_the_cutoff(rows, split, test_cut):
    # Every event has its own item, so an item names exactly one event and its time.
    unique = [(user, f"e{k}", minute) for k, (user, minute) in enumerate(rows)]
    minute_of = {item: minute for _, item, minute in unique}
    window = 5
    cfg = SequenceConfig(
        split=split, temporal_cutoff=T0 + timedelta(minutes=test_cut), temporal_window_days=window / 1440
    )
    seqs = build_sequences(events(unique), cfg)
    train = decode(seqs, seqs.train, "items")
    # Targets of training are positions 1..n-1 of each training sequence.
    trained = {user: set(items[1:]) for user, items in train.items()}
    for frame in (seqs.valid, seqs.test):
        for user, target in decode(seqs, frame, "target").items():
            assert target not in trained.get(user, set())
            assert target not in train.get(user, [])
    if split == "temporal":
        assert all(minute_of[i] < test_cut - window for items in train.values() for i in items)
        assert all(test_cut - window <= minute_of[t] < test_cut for t in decode(seqs, seqs.valid, "target").values())
        assert all(minute_of[t] >= test_cut for t in decode(seqs, seqs.test, "target").values())
