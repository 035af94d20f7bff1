"""The stages both flows run, in the order of the pipeline diagram:

validate -> sequences -> train (or reuse the champion) -> evaluate -> promote or keep -> score
-> fallback -> publish -> report.

Called inside a flow run; every stage is a task, so the UI shows each one's state (Cached on a
rerun of a completed night). A stage whose code has not landed yet is skipped and named in the
report; the popularity fallback then serves everyone.
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_client
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows import tasks, training
from flows.report import publish_artifacts, read_stats, recommendation_summary
from nightrec.config import NightrecConfig
from nightrec.layout import BEHAVIOR_DIR, BEHAVIOR_JSON, SEQUENCE_STATS_FILE, latest_earlier_run, runs_dir
from nightrec.registry import champion_before, read_champion, retrain_due, valid_ndcg

DEGRADED_EVENT = "nightrec.quality.degraded"
STAGES = ("validate", "behavior", "sequences", "train", "evaluate", "promote", "score", "fallback", "publish", "report")


def _ensure(task, *args: Any) -> Any:
    """Run ``task``; if a cached result names paths that no longer exist, run it afresh."""
    result = task(*args)
    paths = [p for p in (result if isinstance(result, tuple) else (result,)) if isinstance(p, Path)]
    if any(not p.exists() for p in paths):
        get_run_logger().warning(f"{task.name}: cached output is gone; recomputing")
        result = task.with_options(refresh_cache=True)(*args)
    return result


def stale_run_reason(scheduled: datetime | None, max_age_hours: float, now: datetime | None = None) -> str | None:
    """Why a scheduled run is too late to run (None when it is not): missed nights are not replayed."""
    if scheduled is None:
        return None
    now = now or datetime.now(UTC)
    late = now - scheduled
    if late > timedelta(hours=max_age_hours):
        return f"scheduled for {scheduled.isoformat()}, {late.total_seconds() / 3600:.1f} h ago (limit {max_age_hours:g} h): not replayed"
    return None


def _rename_run(flow_name: str, run_date: date) -> None:
    run_id = flow_run.id
    name = f"{flow_name}-{run_date.isoformat()}"
    if run_id and flow_run.name != name and not flow_run.name.startswith(name):
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=name)


def _live_ndcg(metrics: dict[str, Any], promotion: dict[str, Any]) -> float | None:
    """Validation NDCG@10 of the model serving after tonight's gate, on tonight's window."""
    if promotion.get("promoted") and "candidate" in metrics:
        return valid_ndcg(metrics["candidate"])
    if "champion" in metrics:
        return valid_ndcg(metrics["champion"])
    return None


def previous_behavior(config: NightrecConfig, run_date: date) -> Path | None:
    """The latest earlier night's ``behavior.json``, for the night-to-night change."""
    return latest_earlier_run(runs_dir(config.data_dir), run_date, f"{BEHAVIOR_DIR}/{BEHAVIOR_JSON}")


def quality_degraded(metrics: dict[str, Any], promotion: dict[str, Any], behavior: dict[str, Any]) -> str | None:
    """The reason to retrain, when the live model is below popularity or the data drifted."""
    reasons = []
    live = _live_ndcg(metrics, promotion)
    popularity = metrics.get("popularity", {}).get("ndcg@10")
    if live is not None and popularity is not None and live < popularity:
        reasons.append(f"live model NDCG@10 {live:.4f} is below the popularity baseline {popularity:.4f}")
    if behavior.get("drift"):
        reasons.append(behavior.get("drift_message") or "data drift flagged")
    return "; ".join(reasons) or None


def run_pipeline(config: NightrecConfig, flow_name: str, retrain_reason: str | None = None) -> dict[str, Any]:
    """Every stage for one night; ``retrain_reason`` set means a full retrain from scratch."""
    logger = get_run_logger()
    progress = create_progress_artifact(progress=0.0, description=f"{flow_name}: stages done of {len(STAGES)}")
    done = 0

    def step(name: str, what: str) -> None:
        nonlocal done
        stages[name] = what
        done += 1
        update_progress_artifact(progress, progress=100.0 * done / len(STAGES))

    stages: dict[str, str] = {}
    run_date = tasks.resolve_run_date(config)
    # Absolute from here on: the trainer subprocess and GX do not share this process's working directory.
    config = config.model_copy(update={"run_date": run_date, "data_dir": config.data_dir.resolve()})
    _rename_run(flow_name, run_date)
    files = tasks.locate_input(config)
    events_path = _ensure(tasks.ingest_events, config, run_date, files)
    clean_path, validation = _ensure(tasks.validate_events, events_path, config, run_date)
    step("validate", f"{validation['rows_clean']} clean of {validation['rows_in']} rows")
    behavior = tasks.behavior_report(clean_path, config, previous_behavior(config, run_date))
    step("behavior", behavior["drift_message"])

    root = training.models_dir(config)
    champion = champion_before(root, run_date)
    candidate = None
    seq_dir = _ensure(tasks.build_sequences, clean_path, config, champion)
    step("sequences", f"`{seq_dir}`")

    if retrain_reason is not None:
        candidate = _ensure(training.train_model, seq_dir, config, run_date, None, "scratch")
        step("train", f"retrained from scratch ({retrain_reason}): `{candidate.name}`")
    elif retrain_due(champion, run_date, config.orchestration.retrain_every_days):
        mode = "warm" if champion is not None else "scratch"
        candidate = _ensure(training.train_model, seq_dir, config, run_date, champion, mode)
        step("train", f"{mode} start{' from ' + champion.name if champion else ''}: `{candidate.name}`")
    else:
        step("train", f"not due; champion `{champion.name}` reused")

    metrics = training.evaluate(seq_dir, clean_path, config, run_date, candidate, read_champion(root))
    step("evaluate", "validation NDCG@10 on tonight's window (model, champion, served popularity)")
    promotion = training.promote(config, candidate, metrics)
    step("promote", promotion["reason"])

    serving = read_champion(root)
    scores_path = None
    if serving is not None:
        scores_path = _ensure(training.score, serving, seq_dir, config.k)
        step("score", f"model `{serving.name}` scored every known user")
    else:
        step("score", "skipped: no serving model")
    version = serving.name if scores_path is not None else None
    recs_path, fallback_path = _ensure(
        tasks.assemble_recommendations, clean_path, config, run_date, scores_path, version
    )
    step("fallback", "popularity for users without a model list")
    published = tasks.publish(recs_path, fallback_path, config, run_date)
    step("publish", f"{published['rows']} rows for {published['users']} users")

    summary = {
        "flow": flow_name,
        "run_date": run_date.isoformat(),
        "reason": retrain_reason,
        "validation": validation,
        "behavior": behavior,
        "sequence_stats": read_stats(seq_dir.parent / SEQUENCE_STATS_FILE),
        "metrics": metrics,
        "promotion": promotion,
        "trained": str(candidate) if candidate else None,
        "model_version": version,
        "recommendations": recommendation_summary(recs_path, clean_path),
        "published": published,
        "stages": stages,
    }
    degraded = quality_degraded(metrics, promotion, behavior)
    if degraded and flow_name == "nightly":
        summary["degraded"] = f"emitted `{DEGRADED_EVENT}`: {degraded}"
        emit_event(
            event=DEGRADED_EVENT,
            resource={"prefect.resource.id": f"nightrec.data-dir.{Path(config.data_dir).resolve()}"},
            payload={"reason": degraded, "run_date": run_date.isoformat(), "data_dir": str(config.data_dir)},
        )
        logger.warning(f"quality degraded: {degraded}")
    step("report", "report, metrics table and link artifacts")
    summary["artifacts"] = publish_artifacts(summary)
    logger.info(f"artifacts: {', '.join(summary['artifacts'])}")
    return summary
