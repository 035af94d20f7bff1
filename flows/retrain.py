"""The retrain flow: a full retrain from scratch on demand, then the same stages as a night
(evaluate, the promotion gate, score, fallback, publish, report). Triggered by
``nightrec retrain`` or by the automation on ``nightrec.quality.degraded``.
"""

from datetime import date

from prefect import flow

from flows.nightly import final_state, run_name, with_run_date
from flows.pipeline import run_pipeline
from nightrec.config import NightrecConfig


@flow(name="retrain", flow_run_name=lambda: run_name("retrain"), log_prints=True, timeout_seconds=12 * 3600)
def retrain(reason: str, config: NightrecConfig | None = None, run_date: date | None = None) -> dict:
    """Retrain from scratch on `config`'s events because of `reason`, then publish."""
    return final_state(run_pipeline(with_run_date(config, run_date), "retrain", retrain_reason=reason))
