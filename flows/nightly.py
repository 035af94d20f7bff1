"""The nightly flow: validate -> sequences -> train (warm start) or reuse the champion -> evaluate
-> promote or keep -> score -> fallback -> publish -> report. The stages live in
``flows.pipeline``; this module holds the flow, its parameters and its run name.
"""

from datetime import date

from prefect import flow
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Completed

from flows.executor import with_worker_executor
from flows.pipeline import run_pipeline, stale_run_reason
from flows.secrets import restore_secrets
from nightrec.config import NightrecConfig, load_config

DEGRADED_STATE = "Degraded"


def run_name(flow_name: str) -> str:
    """``<flow>-<run date>``; a run whose date is resolved from the data is renamed once it is known."""
    params = flow_run.parameters
    config = params.get("config") or {}
    run_date = params.get("run_date") or (config.get("run_date") if isinstance(config, dict) else config.run_date)
    return f"{flow_name}-{run_date or 'pending'}"


def with_run_date(config: NightrecConfig | None, run_date: date | None) -> NightrecConfig:
    # no config parameter: the process's own (NIGHTREC_* variables, NIGHTREC_CONFIG file); with
    # one, the process still decides where the shards run
    config = restore_secrets(with_worker_executor(config) if config is not None else load_config())
    return config.model_copy(update={"run_date": run_date}) if run_date else config


@flow(name="nightly", flow_run_name=lambda: run_name("nightly"), log_prints=True, timeout_seconds=6 * 3600)
def nightly(run_date: date | None = None, config: NightrecConfig | None = None) -> dict:
    """One night for `config` (the run date defaults to the day after the latest event).

    A scheduled run that starts more than `orchestration.late_run_max_age_hours` after its slot
    ends Cancelled instead of replaying a missed night.
    """
    config = with_run_date(config, run_date)
    if deployment.id and flow_run.scheduled_start_time:
        stale = stale_run_reason(flow_run.scheduled_start_time, config.orchestration.late_run_max_age_hours)
        if stale:
            return Cancelled(message=stale)
    return final_state(run_pipeline(config, "nightly"))


def final_state(summary: dict):
    """The run's result; a night whose training failed is Completed, since its table was
    published, but named ``Degraded`` so the UI and the API show the model was not refreshed."""
    if summary.get("model_not_refreshed"):
        return Completed(name=DEGRADED_STATE, message=summary["model_not_refreshed"], data=summary)
    return summary
