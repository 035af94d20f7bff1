"""The stages both flows run, in the order of the pipeline diagram:

validate -> behaviour -> sequences -> train (or reuse the champion) -> evaluate -> promote or keep
-> score -> fallback -> publish -> report.

Called inside a flow run; every stage is a task, so the UI shows each one's state (Cached on a
rerun of a completed night). Decisions are the core's (``nightrec.registry.plan_training``, the
promotion gate, ``nightrec.evaluation.gate.quality_degraded``); this module only sequences them.
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_client
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from flows import executor, shards, tasks, training
from flows.concurrency import NIGHT_WAIT_SECONDS, REFRESH_HOLDER, data_dir_slot
from flows.new_items import choose_new_items
from flows.report import prune_artifacts, publish_artifacts, read_stats, recommendation_summary
from nightrec.behavior.trends import previous_report
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.evaluation.gate import quality_degraded
from nightrec.layout import SEQUENCE_STATS_FILE, models_dir, runs_dir
from nightrec.lock import run_lock
from nightrec.privacy.forget_log import forget_log_path
from nightrec.privacy.retention import apply_raw_retention
from nightrec.registry import TrainPlan, clear_retrain_request, plan_training, requested_retrain

DEGRADED_EVENT = "nightrec.quality.degraded"
NO_SCORING = "skipped: no serving model"
STAGES = ("validate", "behavior", "sequences", "train", "evaluate", "promote", "score", "fallback", "publish", "report")


class StageProgress:
    """The run's progress artifact and the one-line outcome of each stage, for the report."""

    def __init__(self, flow_name: str):
        self.stages: dict[str, str] = {}
        self.artifact = create_progress_artifact(progress=0.0, description=f"{flow_name}: stages done of {len(STAGES)}")

    def done(self, name: str, what: str) -> None:
        self.stages[name] = what
        update_progress_artifact(self.artifact, progress=100.0 * len(self.stages) / len(STAGES))


def _ensure(task, *args: Any) -> Any:
    """Run ``task``; if a cached result names paths that no longer exist, run it afresh."""
    return _ensure_state(task, *args)[0]


def _ensure_state(task, *args: Any) -> tuple[Any, bool]:
    """``_ensure``, and whether the result came from the task cache (an earlier run's)."""
    state = task(*args, return_state=True)
    result = state.result()
    paths = [p for p in (result if isinstance(result, tuple) else (result,)) if isinstance(p, Path)]
    if any(not p.exists() for p in paths):
        get_run_logger().warning(f"{task.name}: cached output is gone; recomputing")
        state = task.with_options(refresh_cache=True)(*args, return_state=True)
        result = state.result()
    return result, state.name == "Cached"


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


def validate(runner: TaskRunner | None, events_path: Path, config: NightrecConfig, run_date: date):
    """The clean file and the verdict: in one task, or per shard on ``runner``."""
    if runner is None:
        return _ensure(tasks.validate_events, events_path, config, run_date)
    return shards.validate(runner, events_path, config, run_date)


def sequences(runner: TaskRunner | None, clean_path: Path, config: NightrecConfig, base: Path | None) -> Path:
    """The sequences folder: in one task, or per shard on ``runner``."""
    if runner is None:
        return _ensure(tasks.build_sequences, clean_path, config, base)
    return shards.sequences(runner, clean_path, config, base)


def train(
    seq_dir: Path, config: NightrecConfig, plan: TrainPlan, progress: StageProgress
) -> tuple[Path | None, str | None]:
    """The candidate of tonight's plan (None when the champion is reused) and why training failed.

    A failure or time-out returns ``(None, why)`` instead of raising, so the night is still
    scored by the champion (popularity on a first night) and published.
    """
    if not plan.trains:
        progress.done("train", plan.note)
        return None, None
    try:
        candidate, cached = _ensure_state(
            training.train_model, seq_dir, config, config.run_date, plan.warm_start, plan.mode
        )
    except Exception as exc:  # whatever broke the trainer, last night's model can still serve
        lines = [line for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
        # the first line says what failed, the last what the trainer said last
        said = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1].strip()}"
        why = f"model not refreshed: {plan.mode} training failed ({said})"
        get_run_logger().error(f"{why}; the current champion (or popularity) serves tonight\n{exc}")
        progress.done("train", why)
        return None, why
    if cached:  # a rerun of a trained night: no training happened now, whatever the plan says
        progress.done("train", f"reused from cache: `{candidate.name}` ({plan.note}, trained by an earlier run)")
    else:
        progress.done("train", f"{plan.note}: `{candidate.name}`")
    return candidate, None


def serve(
    config: NightrecConfig,
    seq_dir: Path,
    clean_path: Path,
    serving: Path | None,
    progress: StageProgress,
    runner: TaskRunner | None = None,
):
    """Score with the serving model, then tonight's table with popularity for everyone else."""
    version = serving.name if serving is not None else None
    if runner is not None:
        choices = new_item_choices(config, serving, clean_path)
        paths = shards.serve(runner, config, seq_dir, clean_path, serving, choices)
        what = f"{config.orchestration.shards} shards on {config.orchestration.executor}"
        progress.done("score", f"model `{serving.name}` scored every known user ({what})" if serving else NO_SCORING)
        progress.done("fallback", f"popularity for users without a model list ({what})")
        return version, *paths
    scores_path = None
    if serving is not None:
        scores_path = _ensure(training.score, serving, seq_dir, config.k, config.train.accelerator)
        progress.done("score", f"model `{serving.name}` scored every known user")
    else:
        progress.done("score", NO_SCORING)
    version = serving.name if scores_path is not None else None
    choices = new_item_choices(config, serving, clean_path)
    paths = _ensure(tasks.assemble_recommendations, clean_path, config, config.run_date, scores_path, version, choices)
    progress.done("fallback", "popularity for users without a model list")
    return version, *paths


def new_item_choices(config: NightrecConfig, serving: Path | None, clean_path: Path) -> Path | None:
    """With new-item slots and a serving model: its choices of new items (None: content chooses)."""
    if not config.recommend.new_item_slots or serving is None:
        return None
    return choose_new_items(serving, clean_path, config)


def flag_degraded(summary: dict[str, Any], config: NightrecConfig) -> None:
    """Emit ``nightrec.quality.degraded`` (a nightly run only) when the live model or the data calls for a retrain."""
    quality = quality_degraded(summary["metrics"], summary["promotion"], summary["behavior"])
    degraded = "; ".join(filter(None, (summary.get("model_not_refreshed"), quality)))
    if not degraded or summary["flow"] != "nightly":
        return
    summary["degraded"] = f"emitted `{DEGRADED_EVENT}`: {degraded}"
    emit_event(
        event=DEGRADED_EVENT,
        resource={"prefect.resource.id": f"nightrec.data-dir.{Path(config.data_dir).resolve()}"},
        payload={"reason": degraded, "run_date": summary["run_date"], "data_dir": str(config.data_dir)},
    )
    get_run_logger().warning(f"quality degraded: {degraded}")


def run_pipeline(config: NightrecConfig, flow_name: str, retrain_reason: str | None = None) -> dict[str, Any]:
    """Every stage for one night of ``config``; ``retrain_reason`` set means a full retrain from scratch.

    Holds the data directory's lock throughout: a second run on it fails at once with one line,
    except that a refresh in progress (minutes) is waited for. Then the Prefect slot it shares
    with the refresh flow (``flows.concurrency``), which shows the run in the UI.
    """
    what = f"{flow_name} flow run {flow_run.id or ''}".strip()
    if problem := config.metadata_problem():  # a deployment's run has no CLI preflight
        raise ConfigError(problem)
    with (
        run_lock(config.data_dir, what, wait_for=REFRESH_HOLDER, wait_seconds=NIGHT_WAIT_SECONDS),
        data_dir_slot(config.data_dir),
        executor.shard_executor(config) as runner,
    ):
        return _run_stages(config, flow_name, retrain_reason, runner)


def _run_stages(
    config: NightrecConfig, flow_name: str, retrain_reason: str | None, runner: TaskRunner | None = None
) -> dict[str, Any]:
    """The stages; with ``runner`` (``orchestration.shards``/``executor``) the per-user ones run
    per shard on it (``flows.shards``)."""
    config = tasks.resolve_night(config)
    run_date = config.run_date
    _rename_run(flow_name, run_date)
    progress = StageProgress(flow_name)
    forget_log = forget_log_path(config.data_dir)
    events_path = _ensure(tasks.ingest_events, config, run_date, tasks.locate_input(config), forget_log)
    clean_path, validation = validate(runner, events_path, config, run_date)
    progress.done("validate", f"{validation['rows_clean']} clean of {validation['rows_in']} rows")
    behavior = tasks.behavior_report(clean_path, config, previous_report(runs_dir(config.data_dir), run_date))
    progress.done("behavior", behavior["drift_message"])

    models = models_dir(config.data_dir)
    retrain_reason = retrain_reason or requested_retrain(models)  # e.g. `nightrec forget`
    plan = plan_training(models, run_date, config.orchestration.retrain_every_days, retrain_reason)
    seq_dir = sequences(runner, clean_path, config, plan.base)
    progress.done("sequences", f"`{seq_dir}`")
    candidate, training_failed = train(seq_dir, config, plan, progress)
    metrics = training.evaluate(seq_dir, clean_path, config, run_date, candidate, plan.live)
    progress.done("evaluate", "validation NDCG@10 on tonight's window (model, champion, served popularity)")
    promotion = training.promote(config, candidate, plan.live, metrics)
    progress.done("promote", promotion["reason"])
    serving = Path(promotion["serving"]) if promotion["serving"] else None

    version, recs_path, fallback_path = serve(config, seq_dir, clean_path, serving, progress, runner)
    published = tasks.publish(recs_path, fallback_path, config, run_date)
    if training.crown(config, promotion) is not None:  # only now: a failed publish keeps the champion
        clear_retrain_request(models)  # a model trained without the forgotten users serves
    removed_raw = apply_raw_retention(config.data_dir, run_date, config.privacy.raw_retention_days)
    progress.done("publish", f"{published['rows']} rows for {published['users']} users")

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
        "raw_copies_removed": removed_raw,
        "stages": progress.stages,
    }
    if training_failed:
        summary["model_not_refreshed"] = training_failed
    flag_degraded(summary, config)
    progress.done("report", "report, metrics table and link artifacts")
    report(summary, config)
    return summary


def report(summary: dict[str, Any], config: NightrecConfig) -> None:
    """The run's artifacts, then the artifacts of runs older than the retention pruned."""
    summary["artifacts"] = publish_artifacts(summary)
    get_run_logger().info(f"artifacts: {', '.join(summary['artifacts'])}")
    keep = config.orchestration.artifact_retention_runs
    try:
        pruned = prune_artifacts(summary["flow"], keep)
    except Exception as exc:  # tonight is published; the next run prunes again
        get_run_logger().warning(f"old artifacts not pruned: {type(exc).__name__}: {exc}")
    else:
        get_run_logger().info(f"artifacts of runs before the last {keep}: {pruned} deleted")
