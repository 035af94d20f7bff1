"""The deployments `nightrec serve` registers: names, schedule, concurrency, trigger, parameters."""

import sys

import pytest
from prefect.client.schemas.objects import ConcurrencyLimitStrategy

from flows.deployments import build_deployments
from flows.pipeline import DEGRADED_EVENT
from nightrec.config import NightrecConfig


def test_nightly_is_scheduled_one_at_a_time_and_retrain_is_triggered_by_degraded_quality():
    config = NightrecConfig.model_validate(
        {
            "events": "/srv/events",
            "run_date": "2026-03-11",
            "orchestration": {"timezone": "Europe/Berlin"},
            "publish": {"postgres_url": "postgresql://nightrec:s3cret@db:5432/recs"},
        }
    )
    nightly, retrain, refresh = build_deployments(config)
    assert (nightly.flow_name, nightly.name, retrain.flow_name, retrain.name) == (
        "nightly",
        "nightly",
        "retrain",
        "retrain",
    )

    (schedule,) = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert schedule.active
    for deployment in (nightly, retrain, refresh):
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW

    assert retrain.schedules in (None, [])
    (trigger,) = retrain.triggers
    assert trigger.expect == {DEGRADED_EVENT} == {"nightrec.quality.degraded"}
    assert trigger.parameters == {"reason": "{{ event.payload.reason }}"}

    params = nightly.parameters["config"]
    assert params["events"] == "/srv/events"
    assert "run_date" not in params, "each scheduled night resolves its own date"
    assert "postgres_url" not in params["publish"] and "s3cret" not in str(nightly.parameters)
    # the UI builds its form from the parameter schema: the config is one typed object
    properties = nightly._parameter_openapi_schema.properties
    assert set(properties) == {"run_date", "config"}
    assert set(retrain._parameter_openapi_schema.properties) == {"reason", "config", "run_date"}


def test_refresh_runs_every_half_hour_once_enabled():
    (paused,) = build_deployments(NightrecConfig())[2].schedules
    assert paused.schedule.interval.total_seconds() == 30 * 60 and not paused.active, "off until enabled"
    config = NightrecConfig.model_validate({"orchestration": {"refresh_enabled": True, "refresh_every_minutes": 10}})
    refresh = build_deployments(config)[2]
    (schedule,) = refresh.schedules
    assert (refresh.flow_name, refresh.name) == ("refresh", "refresh")
    assert schedule.schedule.interval.total_seconds() == 600 and schedule.active
    assert set(refresh._parameter_openapi_schema.properties) == {"config", "events"}


def test_retrain_needs_a_server_and_says_so_in_one_line(monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import main

    monkeypatch.setattr(sys, "argv", ["nightrec", "retrain", "--reason", "test"])
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: PREFECT_API_URL is not set: start a server (`make ui`) and export PREFECT_API_URL"
    ]
