"""The nightly schedule fires at the configured hour in the configured time zone, across DST
changes, as the Prefect server's own scheduler computes it."""

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prefect.server.schemas.schedules import CronSchedule

from flows.deployments import build_deployments
from nightrec.config import NightrecConfig, load_config
from nightrec.errors import ConfigError


def _server_schedule(config: NightrecConfig) -> CronSchedule:
    """The schedule exactly as the nightly deployment sends it to the server."""
    nightly = build_deployments(config)[0]
    (schedule,) = nightly.schedules
    return CronSchedule(cron=schedule.schedule.cron, timezone=schedule.schedule.timezone)


def _runs(config: NightrecConfig, start: date, days: int) -> list[datetime]:
    start_at = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    dates = asyncio.run(_server_schedule(config).get_dates(n=days, start=start_at))
    return [d for d in dates if d < start_at + timedelta(days=days)]


def _config(cron: str, tz: str) -> NightrecConfig:
    return NightrecConfig.model_validate({"orchestration": {"cron": cron, "timezone": tz}})


@pytest.mark.parametrize(
    ("tz", "start"),
    [
        ("Europe/Berlin", date(2026, 3, 26)),
        ("Europe/Berlin", date(2026, 10, 22)),
        ("America/New_York", date(2026, 3, 5)),
    ],
)
def test_runs_keep_the_local_hour_across_a_dst_change(tz, start):
    runs = _runs(_config("30 4 * * *", tz), start, 7)
    local = [r.astimezone(ZoneInfo(tz)) for r in runs]
    assert [t.date() for t in local] == [start + timedelta(days=i) for i in range(7)], "one run a night"
    assert {(t.hour, t.minute) for t in local} == {(4, 30)}
    offsets = {t.utcoffset() for t in local}
    assert len(offsets) == 2, "the UTC time moved with the clock change, the local hour did not"


def test_default_two_am_schedule_runs_once_per_night_through_both_changes():
    tz = "Europe/Berlin"
    runs = _runs(_config("0 2 * * *", tz), date(2026, 3, 27), 4)
    runs += _runs(_config("0 2 * * *", tz), date(2026, 10, 23), 4)
    local = [r.astimezone(ZoneInfo(tz)) for r in runs]
    nights = [date(2026, 3, 27) + timedelta(days=i) for i in range(4)]
    nights += [date(2026, 10, 23) + timedelta(days=i) for i in range(4)]
    assert [t.date() for t in local] == nights, "exactly one run every local night: none skipped, none doubled"
    hours = {t.date(): t.hour for t in local}
    # 02:00 does not exist on the spring-forward night; the README names the hour Prefect uses instead.
    spring_hour = hours.pop(date(2026, 3, 29))
    assert set(hours.values()) == {2}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"spring-forward night Prefect runs the nightly schedule at {spring_hour:02d}:00" in " ".join(readme.split())


def test_the_time_zone_comes_from_config_and_is_checked():
    config = load_config(environ={"NIGHTREC_ORCHESTRATION__TIMEZONE": "Asia/Tokyo"})
    assert _server_schedule(config).timezone == "Asia/Tokyo"
    with pytest.raises(ConfigError, match=r"orchestration\.timezone"):
        load_config(environ={"NIGHTREC_ORCHESTRATION__TIMEZONE": "Mars/Olympus"})
