"""The deployments and what triggers them: ``nightly`` on the configured cron and time zone,
``retrain`` on demand (``nightrec retrain``) and on the ``nightrec.quality.degraded`` event (a
Prefect automation created with the deployment), ``refresh`` every
``orchestration.refresh_every_minutes`` once ``orchestration.refresh_enabled`` (the schedule
exists either way, paused until enabled, so the UI can switch it on).
"""

from datetime import timedelta
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval, Schedule

from flows.nightly import nightly
from flows.pipeline import DEGRADED_EVENT
from flows.refresh import refresh
from flows.retrain import retrain
from nightrec.config import SECRETS, NightrecConfig

NIGHTLY = "nightly"
RETRAIN = "retrain"
NIGHTLY_DEPLOYMENT = f"{NIGHTLY}/{NIGHTLY}"
RETRAIN_DEPLOYMENT = f"{RETRAIN}/{RETRAIN}"
REFRESH = "refresh"
REFRESH_DEPLOYMENT = f"{REFRESH}/{REFRESH}"
TAGS = ["nightrec"]


def nightly_schedule(config: NightrecConfig) -> Schedule:
    """The nightly cron in the configured time zone (never the server's local time)."""
    return Cron(config.orchestration.cron, timezone=config.orchestration.timezone)


def refresh_schedule(config: NightrecConfig) -> Schedule:
    """Every ``refresh_every_minutes``; inactive until ``orchestration.refresh_enabled``."""
    o = config.orchestration
    return Interval(timedelta(minutes=o.refresh_every_minutes), active=o.refresh_enabled)


def one_at_a_time() -> ConcurrencyLimitConfig:
    """At most one run at a time; a run that would start while another is running is cancelled."""
    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def config_parameter(config: NightrecConfig) -> dict[str, Any]:
    """The config as a deployment parameter: no run date (each night resolves its own) and no
    secret (the flow reads it from the serving process's environment)."""
    return config.model_dump(mode="json", exclude={"run_date": True, **SECRETS})


def degraded_trigger() -> DeploymentEventTrigger:
    """Run ``retrain`` when the nightly flow says the live model or the data has degraded."""
    return DeploymentEventTrigger(
        name="retrain when nightrec quality degrades",
        expect={DEGRADED_EVENT},
        match={"prefect.resource.id": "nightrec.*"},
        parameters={"reason": "{{ event.payload.reason }}"},
    )


def build_deployments(config: NightrecConfig) -> list[RunnerDeployment]:
    """``nightly`` (scheduled), ``retrain`` (triggered) and ``refresh`` (interval), with the given config."""
    params = {"config": config_parameter(config)}
    return [
        nightly.to_deployment(
            name=NIGHTLY,
            schedules=[nightly_schedule(config)],
            concurrency_limit=one_at_a_time(),
            parameters=params,
            tags=TAGS,
            description="validate -> sequences -> train or reuse -> promote -> score -> fallback -> publish -> report",
        ),
        retrain.to_deployment(
            name=RETRAIN,
            triggers=[degraded_trigger()],
            concurrency_limit=one_at_a_time(),
            parameters=params,
            tags=TAGS,
            description="full retrain from scratch on demand, then score and publish",
        ),
        refresh.to_deployment(
            name=REFRESH,
            schedules=[refresh_schedule(config)],
            concurrency_limit=one_at_a_time(),
            parameters=params,
            tags=TAGS,
            description="re-score the users active since the last run and publish only their rows",
        ),
    ]
