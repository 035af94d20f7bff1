"""Training, evaluation, promotion and scoring tasks.

Training always runs in a subprocess (``python -m lightning_modules.train``): Lightning's DDP
re-executes the launching command once per rank, and that command must never be the flow.
The task streams the trainer's output into the Prefect logger, keeps the last lines for the
error message, and reads back ``metrics.json`` and the checkpoint path.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import date
from pathlib import Path
from uuid import UUID

import polars as pl
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.caching import CONTENT
from lightning_modules.lifeline import ENV as LIFELINE_ENV
from nightrec import layout
from nightrec.config import SECRETS, NightrecConfig
from nightrec.errors import NightrecError
from nightrec.evaluation.gate import served_popularity_metrics
from nightrec.ingest.runs import write_parquet_atomic
from nightrec.layout import (
    BEST_CKPT,
    ITEMS_FILE,
    LAST_CKPT,
    METRICS_FILE,
    PARTIAL_PREFIX,
    RUN_CONFIG_FILE,
    SCORES_FILE,
)
from nightrec.progress import EPOCH, parse_progress
from nightrec.registry import (
    code_version,
    content_hash,
    promotion_decision,
    read_json,
    set_champion,
    valid_ndcg,
    version_name,
    write_version_meta,
)

TRAINER = "lightning_modules.train"  # run as `python -m`; tests swap in a stand-in


class TrainingError(NightrecError):
    """The training subprocess failed; the message carries its exit code and last output lines."""


def models_dir(config: NightrecConfig) -> Path:
    return layout.models_dir(config.data_dir)


def project_env() -> dict[str, str]:
    """The environment for subprocesses: this process's, with the project root importable."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env


def _progress(artifact_id: UUID | None, line: str, epochs: int) -> None:
    event = parse_progress(line)
    if artifact_id is not None and event is not None and event["event"] == EPOCH:
        done = min(int(event["epoch"]) + 1, epochs)
        update_progress_artifact(artifact_id, progress=100.0 * done / epochs)


def run_trainer(cmd: list[str], timeout_s: float, logger, on_line=None) -> tuple[int, list[str]]:
    """Run ``cmd``, logging each output line as it comes; kill its process group at ``timeout_s``."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**project_env(), LIFELINE_ENV: "1"},  # the trainer dies if this process is killed
        cwd=Path(__file__).resolve().parents[1],
        start_new_session=True,  # DDP ranks join the group, so a kill reaches all of them
    )
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout_s, _kill)
    timer.start()
    tail: deque[str] = deque(maxlen=30)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                logger.info(line)
                tail.append(line)
                if on_line is not None:
                    on_line(line)
        rc = proc.wait()
    except BaseException:
        _kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    if timed_out.is_set():
        tail.append(f"killed after the {timeout_s:.0f} s training timeout")
    return rc, list(tail)


def version_for(sequences_dir: Path, config: NightrecConfig, run_date: date, warm_start: Path | None, mode: str):
    """``(version name, data snapshot id)``: both derive from the inputs, so a rerun finds its folder."""
    key = content_hash(sequences_dir)
    config_key = json.dumps(config.model_dump(mode="json", include={"model", "train", "sequences"}), sort_keys=True)
    digest = hashlib.sha256((key + config_key + str(warm_start)).encode()).hexdigest()
    return version_name(run_date, mode, digest), key


def trainer_command(
    config: NightrecConfig, sequences_dir: Path, work: Path, warm_start: Path | None, resume: bool
) -> list[str]:
    """``python -m lightning_modules.train ...`` for ``work``, resuming its ``last.ckpt`` when asked."""
    config_file = work / RUN_CONFIG_FILE
    config_file.write_text(config.model_dump_json(exclude=SECRETS))
    cmd = [sys.executable, "-m", TRAINER, "--config", str(config_file)]
    cmd += ["--sequences", str(sequences_dir), "--out", str(work)]
    if resume:
        cmd.append("--resume")
    if warm_start is not None:
        cmd += ["--warm-start", str(warm_start)]
    return cmd


def finish_version(work: Path, final: Path, sequences_dir: Path, meta: dict) -> Path:
    """Record ``version.json`` and the vocabulary in ``work``, then rename it to ``final``."""
    (work / RUN_CONFIG_FILE).unlink(missing_ok=True)
    metrics = read_json(work / METRICS_FILE)
    # the trainer wrote into the work folder; name the checkpoint as it will be found
    meta["best_checkpoint"] = str(final / Path(metrics.get("best_checkpoint") or BEST_CKPT).name)
    write_version_meta(work, meta)
    # the vocabulary and data snapshot travel with the model, whatever the trainer copied
    if not (work / ITEMS_FILE).is_file():
        shutil.copy2(sequences_dir / ITEMS_FILE, work / ITEMS_FILE)
    os.replace(work, final)
    return final


def resume_or_restart(work: Path, attempt, logger) -> tuple[int, list[str]]:
    """``attempt(resume)`` from the work folder's ``last.ckpt`` when there is one; if resuming
    fails, once more from the start in an emptied folder: a checkpoint cut short by the crash
    that left it must not cost another night."""
    resumed = (work / LAST_CKPT).is_file()
    rc, tail = attempt(resumed)
    if rc != 0 and resumed:
        logger.warning(f"{work.name}: resuming from last.ckpt failed (exit code {rc}); training from the start")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        rc, tail = attempt(False)
    return rc, tail


# No Prefect timeout: the subprocess has its own (config.orchestration.train_timeout_minutes),
# which kills every DDP rank rather than abandoning them.
@task(name="train", cache_policy=CONTENT, persist_result=True, timeout_seconds=None)
def train_model(
    sequences_dir: Path, config: NightrecConfig, run_date: date, warm_start: Path | None, mode: str
) -> Path:
    """Train a new model version into ``models/<version>/`` (atomically) and return its folder.

    ``mode`` is ``warm`` (from ``warm_start``) or ``scratch``. The version name derives from the
    inputs, so a rerun after a crash resumes from ``last.ckpt`` of the unfinished folder.
    """
    logger = get_run_logger()
    version, key = version_for(sequences_dir, config, run_date, warm_start, mode)
    root = models_dir(config)
    final = root / version
    if (final / METRICS_FILE).is_file():
        logger.info(f"model {version} already trained; reusing it")
        return final
    work = root / f"{PARTIAL_PREFIX}{version}"
    work.mkdir(parents=True, exist_ok=True)
    epochs = config.train.epochs
    progress = create_progress_artifact(progress=0.0, description=f"training {version}: epochs done of {epochs}")
    started = time.monotonic()

    def attempt(resume: bool) -> tuple[int, list[str]]:
        cmd = trainer_command(config, sequences_dir, work, warm_start, resume)
        logger.info(f"training {version}: {' '.join(cmd)}")
        on_line = lambda line: _progress(progress, line, epochs)  # noqa: E731
        return run_trainer(cmd, config.orchestration.train_timeout_minutes * 60, logger, on_line)

    rc, tail = resume_or_restart(work, attempt, logger)
    if rc != 0 or not (work / METRICS_FILE).is_file():
        shutil.rmtree(work, ignore_errors=True)
        why = f"exit code {rc}" if rc != 0 else f"no {METRICS_FILE} written"
        raise TrainingError(f"training {version} failed ({why}); last output:\n" + "\n".join(tail[-15:]))
    update_progress_artifact(progress, progress=100.0)
    meta = {
        "version": version,
        "run_date": run_date.isoformat(),
        "mode": mode,
        "data_snapshot_id": key,
        "sequences": str(sequences_dir),
        "warm_start_from": str(warm_start) if warm_start else None,
        "code_version": code_version(),
        "train_seconds": round(time.monotonic() - started, 1),
    }
    return finish_version(work, final, sequences_dir, meta)


@task(name="evaluate", cache_policy=NO_CACHE, timeout_seconds=3600)
def evaluate(
    sequences_dir: Path,
    clean_path: Path,
    config: NightrecConfig,
    run_date: date,
    candidate: Path | None,
    champion: Path | None,
) -> dict:
    """Validation metrics of the candidate, the champion and the served popularity on tonight's window."""
    from lightning_modules.evaluate import model_valid_metrics

    events = pl.scan_parquet(clean_path)
    users = config.train.eval_users  # the users the candidate was validated on
    out: dict = {"popularity": served_popularity_metrics(events, sequences_dir, run_date, config.popularity, users)}
    if candidate is not None:
        out["candidate"] = read_json(candidate / METRICS_FILE)
    if champion is not None and champion != candidate:
        out["champion"] = {"valid": model_valid_metrics(champion, sequences_dir, users)}
    return out


@task(name="promote", cache_policy=NO_CACHE, timeout_seconds=600)
def promote(config: NightrecConfig, candidate: Path | None, champion: Path | None, metrics: dict) -> dict:
    """Apply the promotion gate against ``champion`` (the one serving now); ``serving`` is the
    model that scores tonight.

    The gate only decides: ``models/champion`` moves in ``crown``, once tonight's table is
    published, so a night that fails to publish leaves yesterday's champion in place.
    """
    logger = get_run_logger()
    if candidate is None or champion == candidate:
        reason = "no new model tonight" if candidate is None else f"{candidate.name} is already the champion"
        return {"promoted": False, "reason": reason, "serving": str(champion) if champion else None}
    champion_ndcg = valid_ndcg(metrics["champion"]) if "champion" in metrics else None
    decision = promotion_decision(
        valid_ndcg(metrics["candidate"]), champion_ndcg, config.orchestration.promotion_tolerance
    )
    write_version_meta(
        candidate, {"promotion": decision.as_dict(), "previous_champion": champion.name if champion else None}
    )
    logger.info(f"promotion gate: {decision.reason}")
    serving = candidate if decision.promote else champion
    return {"promoted": decision.promote, "reason": decision.reason, "serving": str(serving), **decision.as_dict()}


@task(name="crown", cache_policy=NO_CACHE, timeout_seconds=600)
def crown(config: NightrecConfig, promotion: dict) -> Path | None:
    """Point ``models/champion`` at the model the gate promoted (called after a successful publish)."""
    if not promotion.get("promoted"):
        return None
    return set_champion(models_dir(config), Path(promotion["serving"]))


@task(name="score", cache_policy=CONTENT, persist_result=True, timeout_seconds=3600)
def score(model_dir: Path, sequences_dir: Path, k: int, accelerator: str = "cpu") -> Path:
    """Top-K for every known user with the serving model, into ``runs/<date>/scores.parquet``;
    on the GPU when ``accelerator`` (``train.accelerator``) allows one and one is visible."""
    from lightning_modules.scoring import score_users, scoring_device

    scores = score_users(model_dir, sequences_dir, k, device=scoring_device(accelerator))
    return write_parquet_atomic(scores, sequences_dir.parent / SCORES_FILE)
