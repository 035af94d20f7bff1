"""Behaviour metrics against counts worked out by hand on small logs."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from nightrec.behavior.analyze import analyze_events, distribution, prepare_events
from nightrec.behavior.trends import compare_headline, headline, js_distance, previous_report, read_previous
from nightrec.config import NightrecConfig
from nightrec.errors import InputError
from nightrec.schema import EVENT_SCHEMA, ITEM_ID, SESSION_ID, TIMESTAMP
from tests.behavior_fixtures import daily_log, funnel_log, log


def test_funnel_of_10_views_4_carts_1_purchase_gives_40_and_25_percent():
    metrics, _ = analyze_events(funnel_log())
    funnel = metrics["funnel"]
    assert [(s["step"], s["events"]) for s in funnel["steps"]] == [
        ("view", 10),
        ("click", 0),
        ("add_to_cart", 4),
        ("purchase", 1),
    ]
    assert funnel["absent"] == ["click"]
    assert "click" in funnel["message"]
    rates = {(c["from"], c["to"]): c["rate"] for c in funnel["conversions"]}
    assert rates == {("view", "add_to_cart"): pytest.approx(0.40), ("add_to_cart", "purchase"): pytest.approx(0.25)}
    assert funnel["overall_conversion"] == pytest.approx(0.10)
    # 5 users viewed, 4 carted (u0..u3), 1 purchased.
    user_rates = {(c["from"], c["to"]): c["user_rate"] for c in funnel["conversions"]}
    assert user_rates[("view", "add_to_cart")] == pytest.approx(4 / 5)
    assert funnel["per_day"][0]["conversions"] == {
        "view->add_to_cart": pytest.approx(0.4),
        "add_to_cart->purchase": pytest.approx(0.25),
    }


def test_funnel_with_one_present_step_names_the_absent_ones_and_divides_nothing():
    events = log([("u1", "i1", "click", 0), ("u1", "i2", "click", 1), ("u2", "i1", "click", 2)])
    funnel = analyze_events(events)[0]["funnel"]
    assert funnel["present"] == ["click"]
    assert funnel["absent"] == ["view", "add_to_cart", "purchase"]
    assert funnel["conversions"] == [] and funnel["overall_conversion"] is None
    assert "view, add_to_cart, purchase" in funnel["message"]
    assert "needs two present steps" in funnel["message"]


def test_funnel_follows_the_configured_steps_and_lists_other_event_types():
    config = NightrecConfig(behavior={"funnel_steps": "view,purchase"})
    funnel = analyze_events(funnel_log(), config)[0]["funnel"]
    assert [s["step"] for s in funnel["steps"]] == ["view", "purchase"]
    assert funnel["conversions"][0]["rate"] == pytest.approx(0.1)
    assert funnel["other_event_types"] == {"add_to_cart": 4}


def test_sessions_use_session_id_when_present_else_a_30_minute_gap():
    events = log(
        [
            # u1 has no session ids: a 40-minute pause splits 0,10,20 from 60,61.
            ("u1", "a", "view", 0),
            ("u1", "b", "view", 10),
            ("u1", "a", "view", 20),
            ("u1", "c", "view", 60),
            ("u1", "c", "click", 61),
            # u2's session id keeps events two hours apart together.
            ("u2", "a", "view", 0, "s9"),
            ("u2", "b", "view", 120, "s9"),
        ]
    )
    df, note = prepare_events(events, 30)
    assert note["session_source"] == "mixed" and note["rows_with_session_id"] == 2
    assert df.group_by("__session").len().height == 3
    sessions = analyze_events(events)[0]["sessions"]
    assert sessions["sessions"] == 3
    lengths = sorted([20.0, 1.0, 120.0])
    assert sessions["length_minutes"]["max"] == pytest.approx(max(lengths))
    assert sessions["length_minutes"]["median"] == pytest.approx(20.0)
    assert sessions["events_per_session"]["mean"] == pytest.approx(7 / 3)
    assert sessions["items_per_session"]["max"] == 2
    assert sessions["sessions_per_user"]["max"] == 2


def test_session_timeout_is_configurable():
    events = log([("u1", "a", "view", 0), ("u1", "b", "view", 40)])
    assert analyze_events(events)[0]["sessions"]["sessions"] == 2
    longer = NightrecConfig(behavior={"session_timeout_minutes": 45})
    assert analyze_events(events, longer)[0]["sessions"]["sessions"] == 1


def test_activity_counts_new_returning_weekly_and_churn_candidates():
    day = 1440
    events = log(
        [
            ("u1", "a", "view", 0),
            ("u2", "a", "view", 1),
            ("u1", "b", "view", day),
            ("u3", "b", "view", day + 1),
            ("u1", "c", "view", 9 * day),
        ]
    )
    config = NightrecConfig(behavior={"churn_inactive_days": 5})
    metrics, churn = analyze_events(events, config)
    activity = metrics["activity"]
    daily = {row["day"]: row for row in activity["daily"]}
    assert [(r["active_users"], r["new_users"], r["returning_users"]) for r in daily.values()] == [
        (2, 2, 0),
        (2, 1, 1),
        (1, 0, 1),
    ]
    # 2026-03-02 is a Monday: days 0,1 in one week, day 9 in the next.
    assert [(w["week"], w["active_users"]) for w in activity["weekly"]] == [("2026-03-02", 3), ("2026-03-09", 1)]
    assert activity["churn"]["candidates"] == 2
    assert sorted(churn["user_id"].to_list()) == ["u2", "u3"]
    assert churn.filter(pl.col("user_id") == "u2")["days_inactive"][0] == pytest.approx(9 - 1 / 1440)


def test_long_tail_shares_and_gini_match_a_hand_computation():
    counts = {"a": 6, "b": 2, "c": 1, "d": 1}
    rows = [(f"u{k}", item, "view", k * 60) for item, n in counts.items() for k in range(n)]
    tail = analyze_events(log(rows))[0]["long_tail"]
    assert tail["items"] == 4
    assert tail["top1_share"] == pytest.approx(0.6) and tail["top10_share"] == pytest.approx(0.6)
    # Mean absolute difference over all ordered pairs / (2 * mean): 32 / (2 * 16 * 2.5) = 0.4
    assert tail["gini"] == pytest.approx(0.4)
    assert tail["curve"]["event_share"][-1] == pytest.approx(1.0)


def test_transitions_stay_within_sessions_and_use_the_browse_step():
    events = log(
        [
            ("u1", "A", "view", 0, "s1"),
            ("u1", "A", "click", 0.5, "s1"),
            ("u1", "B", "view", 1, "s1"),
            ("u1", "B", "view", 1.5, "s1"),
            ("u1", "A", "view", 2, "s1"),
            ("u1", "C", "view", 3, "s1"),
            ("u1", "A", "view", 4, "s2"),
            ("u1", "B", "view", 5, "s2"),
            ("u2", "C", "view", 0, "s3"),
        ]
    )
    metrics = analyze_events(events)[0]
    trans = metrics["transitions"]
    assert trans["event_type"] == "view"
    # s1: A->B, B->A, A->C (B->B is no move); s2: A->B; nothing crosses s1/s2 or users.
    assert trans["transitions"] == 4
    assert trans["top"][0] == {
        "from_item": "A",
        "to_item": "B",
        "count": 2,
        "share": 0.5,
        "share_of_from": pytest.approx(2 / 3),
    }
    assert {(t["from_item"], t["to_item"]) for t in trans["top"]} == {("A", "B"), ("B", "A"), ("A", "C")}
    repeat = metrics["repeat"]
    # views: u1 A,B,B,A,C,A,B + u2 C = 8 events on 4 user-item pairs; u1-A and u1-B recur across sessions.
    assert repeat["events"] == 8 and repeat["user_item_pairs"] == 4
    assert repeat["repeat_rate"] == pytest.approx(4 / 8)
    assert repeat["cross_session_repeat_rate"] == pytest.approx(2 / 4)


def test_single_day_says_there_is_no_history_yet():
    drift = analyze_events(funnel_log())[0]["drift"]
    assert drift["status"] == "no_history" and drift["flagged"] is False
    assert drift["message"].startswith("no history yet")


def test_steady_days_do_not_drift_and_a_volume_jump_does():
    steady = analyze_events(daily_log(days=8))[0]["drift"]
    assert steady["status"] == "ok" and steady["flagged"] is False, steady["reasons"]
    assert {c["metric"] for c in steady["checks"]} == {
        "events",
        "active_users",
        "conversion view->purchase",
        "item popularity",
    }
    jump = analyze_events(daily_log(days=8, shift_last=3))[0]["drift"]
    assert jump["flagged"] is True
    assert [c["metric"] for c in jump["checks"] if c["flagged"]] == ["events"]
    events_check = next(c for c in jump["checks"] if c["metric"] == "events")
    assert events_check["change"] == pytest.approx(2.0)


def test_a_new_catalogue_on_the_last_day_flags_item_popularity():
    events = daily_log(days=8)
    last = events[TIMESTAMP].max().date()
    moved = events.with_columns(
        pl.when(pl.col(TIMESTAMP).dt.date() == last)
        .then(pl.lit("new-") + pl.col(ITEM_ID))
        .otherwise(pl.col(ITEM_ID))
        .alias(ITEM_ID)
    )
    drift = analyze_events(moved)[0]["drift"]
    pop = next(c for c in drift["checks"] if c["metric"] == "item popularity")
    assert pop["current"] == pytest.approx(1.0) and pop["flagged"] is True
    assert any("item popularity" in r for r in drift["reasons"])


def test_js_distance_bounds():
    assert js_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_bad_input_is_a_clear_error():
    with pytest.raises(InputError, match="empty"):
        analyze_events(pl.DataFrame(schema=EVENT_SCHEMA))
    with pytest.raises(InputError, match="missing required column 'event_type'"):
        analyze_events(funnel_log().drop("event_type"))
    nulls = funnel_log().with_columns(pl.lit(None, pl.String).alias(ITEM_ID))
    with pytest.raises(InputError, match="lack a"):
        analyze_events(nulls)


def test_rows_without_a_key_are_counted_and_left_out():
    events = funnel_log()
    events = events.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col(ITEM_ID)).alias(ITEM_ID)
    ).drop(SESSION_ID)
    overview = analyze_events(events)[0]["overview"]
    assert overview["rows_dropped_missing_key"] == 2 and overview["events"] == 13
    assert overview["session_source"] == "timeout"


def test_headline_change_against_the_previous_night(tmp_path):
    metrics, _ = analyze_events(daily_log(days=4))
    tonight = headline(metrics)
    before = {**tonight, "events": tonight["events"] - 100, "overall_conversion": None}
    change = compare_headline(tonight, before)
    assert change["events"]["change"] == 100
    assert change["events"]["relative"] == pytest.approx(100 / (tonight["events"] - 100))
    assert change["users"]["change"] == 0
    assert change["overall_conversion"]["change"] is None
    assert read_previous(tmp_path / "nope.json")[1].startswith("no previous report at")
    (tmp_path / "bad.json").write_text("{")
    assert "unreadable" in read_previous(tmp_path / "bad.json")[1]


def test_previous_report_finds_the_newest_earlier_night(tmp_path):
    for day in ("2026-03-01", "2026-03-03", "2026-03-05"):
        (tmp_path / day / "behavior").mkdir(parents=True)
        (tmp_path / day / "behavior" / "behavior.json").write_text("{}")
    found = previous_report(tmp_path, date(2026, 3, 5))
    assert found == tmp_path / "2026-03-03" / "behavior" / "behavior.json"
    assert previous_report(tmp_path, date(2026, 3, 1)) is None


def test_events_outside_the_funnel_still_analyse():
    metrics = analyze_events(log([("u1", "a", "hover", 0), ("u1", "b", "hover", 5), ("u2", "a", "hover", 9)]))[0]
    assert metrics["funnel"]["present"] == [] and metrics["funnel"]["other_event_types"] == {"hover": 3}
    assert "found 0" in metrics["funnel"]["message"]
    # Without a funnel step, transitions and repeats fall back to every event.
    assert metrics["transitions"]["event_type"] == "all" and metrics["transitions"]["transitions"] == 1
    assert metrics["repeat"]["repeat_rate"] == 0.0


def test_distributions_switch_to_log_bins_only_when_heavy_tailed():
    light = distribution(np.array([1, 2, 2, 3, 3, 3, 4, 5]), "events", integer=True)
    assert light["log_scale"] is False and sum(light["counts"]) == 8 and light["median"] == 3
    heavy = distribution(np.array([1.0] * 50 + [2.0] * 30 + [500.0, 5000.0]), "minutes")
    assert heavy["log_scale"] is True
    assert heavy["edges"][-1] / heavy["edges"][0] > 1000 and sum(heavy["counts"]) == 82
    with_zeros = distribution(np.array([0.0, 0.0, 1.0, 1.0, 900.0]), "minutes")
    assert with_zeros["zeros"] == 2 and sum(with_zeros["counts"]) == 3
