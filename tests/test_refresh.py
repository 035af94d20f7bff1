"""The intra-day refresh, end to end through Prefect on constructed data whose answer is known.

Users browse one of two disjoint categories (items ``a..`` or ``b..``); a small model trained by
the nightly learns to recommend the category a history is in. A refresh must then move a user
whose latest events switch category, give a brand-new user a model list, quarantine bad rows
with nothing lost, leave every other user's rows exactly as the night published them, and skip
while another run holds the data directory.
"""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from nightrec.config import NightrecConfig
from nightrec.lock import run_lock
from nightrec.schema import EVENT_SCHEMA, ITEM_ID, USER_ID
from tests.flow_fixtures import flow_run_artifacts, latest_table

END = date(2026, 3, 10)  # last day of the log
NIGHT = END + timedelta(days=1)  # the run date: the refresh reads events of this day
MORNING = datetime.combine(NIGHT, datetime.min.time(), tzinfo=UTC) + timedelta(hours=8)
MOVER = "u0000"  # browses category a all week, then switches to b in the morning
NEWBIE = "new-user"


def category_log(users: int = 600, sessions: int = 4, per_session: int = 5, seed: int = 3) -> pl.DataFrame:
    """Every session views random items of one category, chosen per session (the mover's are all
    a): the next item's category is the current session's, so a model learns to follow the latest
    events."""
    rng = np.random.default_rng(seed)
    first = datetime.combine(END - timedelta(days=4), datetime.min.time(), tzinfo=UTC)
    rows = []
    for u in range(users):
        user = f"u{u:04d}"
        # sessions spread over the five days (every day has its share of the volume)
        for start in np.sort(rng.integers(0, 5 * 24 * 60 - 60, sessions)):
            category = "a" if user == MOVER else "ab"[int(rng.integers(0, 2))]
            t = first + timedelta(minutes=int(start))
            for item in rng.integers(0, 30, per_session):
                t += timedelta(seconds=int(rng.integers(60, 300)))
                rows.append((user, f"{category}{item:02d}", "view", t))
    return _events(rows)


def _events(rows: list[tuple]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "timestamp"], orient="row")
    return frame.with_columns(pl.col("timestamp").cast(EVENT_SCHEMA["timestamp"]))


def day_events(user: str, items: list[str], start: datetime = MORNING) -> list[tuple]:
    return [(user, item, "view", start + timedelta(minutes=3 * i)) for i, item in enumerate(items)]


def share_b(frame: pl.DataFrame, user: str) -> float:
    items = frame.filter(pl.col(USER_ID) == user).get_column(ITEM_ID)
    return float(items.str.starts_with("b").mean())


def publish_night(root, privacy: dict | None = None) -> NightrecConfig:
    """A published night (a trained model serving) on the category log; returns its config."""
    from tests.flow_fixtures import run_night

    events = root / "events"
    events.mkdir()
    category_log().write_parquet(events / "week.parquet")
    config = NightrecConfig.model_validate(
        {
            "data_dir": str(root / "data"),
            "events": str(events),
            "k": 10,
            "model": {"embedding_dim": 16, "hidden_size": 16},
            "train": {"epochs": 8, "batch_size": 32, "num_threads": 1, "max_minutes": None},
            "privacy": privacy or {},
        }
    )
    state = run_night(config, NIGHT)
    assert state.is_completed(), state.message
    assert state.result()["model_version"], "a model must serve the night"
    return config


@pytest.fixture(scope="module")
def night(prefect_harness, tmp_path_factory):
    return publish_night(tmp_path_factory.mktemp("refresh"))


def run_refresh(config: NightrecConfig, events=None):
    from flows.refresh import refresh

    return refresh(config=config, events=events, return_state=True)


def test_a_refresh_rescores_only_the_active_users(night):
    nightly = latest_table(night)
    assert share_b(nightly, MOVER) <= 0.3, "the model learned the categories: a's history gets a items"
    assert nightly.filter(pl.col(USER_ID) == NEWBIE).is_empty()

    # the day's events so far: the mover switches to category b, a new user browses b, a bad row
    morning = day_events(MOVER, ["b01", "b07", "b13", "b22", "b29", "b05"]) + day_events(
        NEWBIE, ["b02", "b11", "b17", "b24"], MORNING + timedelta(minutes=1)
    )
    bad = [(MOVER, "b03", "hover", MORNING + timedelta(hours=1))]  # an unknown event type
    drop = _events(morning + bad)
    drop.write_parquet(f"{night.events}/today.parquet")  # beside the week's file, as a shop's export adds files

    state = run_refresh(night)
    assert state.is_completed(), state.message
    summary = state.result()
    v = summary["validation"]
    assert (v["rows_in"], v["rows_clean"], v["rows_quarantined"]) == (11, 10, 1), "nothing lost"
    assert v["by_reason"]["unknown_event_type"] == 1
    assert summary["users_refreshed"] == 2
    assert flow_run_artifacts(state).get("refresh-report") == "markdown"

    fresh = latest_table(night)
    assert share_b(fresh, MOVER) >= 0.6, "the refreshed list follows the new category"
    newbie = fresh.filter(pl.col(USER_ID) == NEWBIE)
    assert newbie.height == 10 and set(newbie.get_column("source")) == {"model"}, "a model list, not popularity"
    assert share_b(fresh, NEWBIE) >= 0.6
    refreshed = fresh.filter(pl.col(USER_ID).is_in([MOVER, NEWBIE]))
    assert refreshed.get_column("refreshed_at").is_not_null().all()
    assert refreshed.get_column("model_version").unique().to_list() == [summary["model_version"]]
    seen = {item for user, item, *_ in morning if user == MOVER}  # the quarantined row is not history
    assert not seen & set(fresh.filter(pl.col(USER_ID) == MOVER).get_column(ITEM_ID)), "seen items stay masked"

    # every other user: exactly the night's rows
    others = fresh.filter(~pl.col(USER_ID).is_in([MOVER, NEWBIE]))
    assert others.equals(nightly.filter(pl.col(USER_ID) != MOVER))

    # a second refresh with nothing new touches nobody and publishes nothing
    again = run_refresh(night).result()
    assert again["users_refreshed"] == 0 and again["validation"]["rows_in"] == 0 and "published" not in again
    assert latest_table(night).equals(fresh)


def test_a_refresh_skips_while_another_run_holds_the_data_directory(night):
    before = latest_table(night)
    with run_lock(night.data_dir, "nightly flow run (a test)"):
        state = run_refresh(night)
    assert state.is_cancelled() and "refresh skipped" in state.message, state.message
    assert latest_table(night).equals(before)


def test_nightrec_refresh_from_the_command_line(night):
    """The command a cron job or an operator types: one JSON document, nothing new to read."""
    import json
    import re
    import subprocess
    import sys

    from tests.publish_fixtures import subprocess_env

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "refresh",
            "--data-dir",
            str(night.data_dir),
            "--events",
            night.events,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["users_refreshed"] == 0 and summary["validation"]["rows_in"] == 0
    assert summary["run_date"] == NIGHT.isoformat()
    # `nightrec recommend` says when a list is a refresh's (the mover was refreshed above)
    shown = subprocess.run(
        [sys.executable, "-m", "flows.cli", "recommend", MOVER, "--data-dir", str(night.data_dir)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    line = rf"user {MOVER} - run {NIGHT} - refreshed \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC - source: model"
    assert shown.returncode == 0 and re.search(line, shown.stdout), shown.stdout


def test_a_pseudonymised_night_is_refreshed_under_the_same_keys(prefect_harness, tmp_path):
    """With ``privacy.pseudonymize`` the table is keyed by pseudonym: the refresh reads raw ids,
    pseudonymises them as ingest does and replaces the pseudonym's list, never adding a raw id."""
    from nightrec.privacy.pseudonyms import pseudonymize

    config = publish_night(tmp_path, {"pseudonymize": True, "key": "refresh-key-0123456789"})
    before = latest_table(config)
    _events(day_events(MOVER, ["b01", "b07", "b13", "b22", "b29", "b05"])).write_parquet(
        f"{config.events}/today.parquet"
    )
    assert run_refresh(config).result()["users_refreshed"] == 1
    after = latest_table(config)
    mover = pseudonymize(_events(day_events(MOVER, ["b01"])), config.privacy.key)[USER_ID][0]
    assert MOVER not in set(after.get_column(USER_ID)), "no raw id is published"
    refreshed = after.filter(pl.col("refreshed_at").is_not_null())
    assert after.height == before.height and refreshed[USER_ID].unique().to_list() == [mover]
