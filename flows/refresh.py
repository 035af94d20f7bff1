"""The refresh flow: between nights, fresh lists for the users active since the last run.

read the events after the watermark -> row rules (quarantine) -> the touched users' histories ->
score them with the serving model -> fallback for the rest of them -> publish only their rows.

A refresh extends the latest published night ``D`` (``nightrec.refresh``): no training, no
night-level checks, and everyone it does not touch keeps the night's rows byte for byte. It
shares one concurrency slot with the nightly and retrain flows (``flows.concurrency``): a
refresh that finds a night running ends Cancelled, and the night absorbs the day's events as
always, since it reads the whole source.
"""

import contextlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Cancelled

from flows.concurrency import REFRESH_HOLDER, data_dir_slot
from flows.secrets import restore_secrets
from flows.tasks import IO_RETRIES
from nightrec.config import NightrecConfig, load_config
from nightrec.errors import NightrecError
from nightrec.layout import CLEAN_FILE, QUARANTINE_FILE, RECOMMENDATIONS_FILE, SCORES_FILE, SEQUENCES_DIR, run_dir
from nightrec.lock import run_lock
from nightrec.refresh.events import ACCEPTED_FILE, accepted_files, advanced, day_events, select_new, touched_events
from nightrec.refresh.state import read_state, refresh_work_dir, write_state
from nightrec.schema import USER_ID, is_model_version

REFRESH = "refresh"
REPORT_KEY = "refresh-report"
READ_FILE = "events-in.parquet"  # the rows read after the watermark, before the row rules
HISTORY_FILE = "history.parquet"  # every event of the touched users: night + day


def run_name() -> str:
    return f"{REFRESH}-{datetime.now(UTC):%Y-%m-%dT%H%M}"


@flow(name=REFRESH, flow_run_name=run_name, log_prints=True, timeout_seconds=3600)
def refresh(config: NightrecConfig | None = None, events: str | None = None):
    """New lists for the users with events since the last nightly or refresh run.

    ``events`` is where to read them (default: the config's input, which the nightly reads too).
    Ends Cancelled at once, touching nothing, while another run holds the data directory.
    """
    config = restore_secrets(config if config is not None else load_config())
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(run_lock(config.data_dir, f"{REFRESH_HOLDER} flow run {flow_run.id or ''}".strip()))
        except NightrecError as busy:  # a night (or another refresh) holds the data directory
            return Cancelled(message=f"refresh skipped: {busy}; the events wait for the next run")
        held.enter_context(data_dir_slot(config.data_dir))
        summary = run_refresh(config.model_copy(update={"data_dir": config.data_dir.resolve()}), events)
    summary["artifact"] = refresh_artifact(summary)
    return summary


def serving_night(data_dir: Path) -> tuple[date, str | None]:
    """The latest published night and the model that served it (None: popularity only)."""
    from nightrec.publish.local import MANIFEST_FILE, partition_dir, published_dates

    dates = published_dates(data_dir)
    if not dates:
        raise NightrecError(f"{data_dir}: no published night to refresh; run `nightrec run` first")
    manifest = json.loads((partition_dir(data_dir, dates[-1]) / MANIFEST_FILE).read_text())
    version = manifest.get("model_version")
    return dates[-1], version if is_model_version(version) else None


def run_refresh(config: NightrecConfig, events: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    run_date, version = serving_night(config.data_dir)
    state = read_state(config.data_dir, run_date)
    refreshed_at = datetime.now(UTC)
    out = refresh_work_dir(config.data_dir, run_date) / refreshed_at.strftime("%Y%m%dT%H%M%S%fZ")
    out.mkdir(parents=True)
    seconds: dict[str, float] = {}

    def timed(name: str, fn, *args):
        begun = time.perf_counter()
        result = fn(*args)
        seconds[name] = round(time.perf_counter() - begun, 3)
        return result

    source = events or config.events
    if source is None:
        raise NightrecError("no input events: pass --events PATH or set NIGHTREC_EVENTS (or 'events' in the config)")
    read_path = timed("read", read_new_events, str(source), config, state.watermark, out)
    validation = timed("validate", validate_rows, read_path, config, run_date, out)
    touched = pl.read_parquet(out / ACCEPTED_FILE, columns=[USER_ID]).get_column(USER_ID).unique().sort()
    summary: dict[str, Any] = {
        "flow": REFRESH,
        "run_date": run_date.isoformat(),
        "refreshed_at": refreshed_at.isoformat(),
        "watermark_before": state.watermark.isoformat(),
        "validation": validation,
        "users_refreshed": touched.len(),
        "model_version": version,
        "folder": str(out),
    }
    if touched.len():
        seq_dir = timed("sequences", touched_sequences, config, run_date, out)
        scores = timed("score", score_touched, config, version, seq_dir) if version else None
        recs = timed("fallback", assemble_touched, config, run_date, out, scores, version)
        summary["published"] = timed("publish", publish_touched, recs, config, run_date, refreshed_at)
        summary["sources"] = source_counts(recs)
    after = advanced(state, pl.read_parquet(read_path), _latest_allowed(config, run_date))
    write_state(config.data_dir, after)
    summary["watermark"] = after.watermark.isoformat()
    summary["seconds"] = seconds | {"total": round(time.perf_counter() - started, 3)}
    return summary


def _latest_allowed(config: NightrecConfig, run_date: date) -> datetime:
    from expectations.rules import latest_allowed

    return latest_allowed(config, run_date + timedelta(days=1))


@task(name="refresh-read", cache_policy=NO_CACHE, timeout_seconds=1800, **IO_RETRIES)
def read_new_events(source: str, config: NightrecConfig, watermark: datetime, out: Path) -> Path:
    """The source's rows after the watermark, with the nightly's privacy applied (forgotten users
    dropped, ids pseudonymised when configured), into ``<refresh>/events-in.parquet``."""
    from expectations.load import load_events
    from nightrec.privacy.ingest import protect_events

    loaded = load_events(source, config.format).events
    new = select_new(protect_events(loaded, config.data_dir, config.privacy), watermark)
    path = out / READ_FILE
    new.write_parquet(path)
    return path


@task(name="refresh-validate", cache_policy=NO_CACHE, timeout_seconds=1800)
def validate_rows(read_path: Path, config: NightrecConfig, run_date: date, out: Path) -> dict:
    """The nightly's row rules, over the day after night ``run_date``: accepted rows to
    ``events.parquet``, the rest to ``quarantine.parquet`` with their reasons; nothing is lost."""
    from expectations.rules import row_rules, split_quarantine

    read = pl.read_parquet(read_path)
    split = split_quarantine(read, row_rules(config, run_date + timedelta(days=1), read))
    split.clean.write_parquet(out / ACCEPTED_FILE)
    split.quarantine.write_parquet(out / QUARANTINE_FILE)
    return split.summary


@task(name="refresh-sequences", cache_policy=NO_CACHE, timeout_seconds=1800)
def touched_sequences(config: NightrecConfig, run_date: date, out: Path) -> Path:
    """The touched users' histories (the night's events and the day's), built as the nightly
    builds sequences, with night ``run_date``'s vocabulary kept: ``<refresh>/sequences/``."""
    from nightrec.sequences.build import build_sequences, write_sequences

    night = run_dir(config.data_dir, run_date)
    touched = pl.read_parquet(out / ACCEPTED_FILE, columns=[USER_ID]).get_column(USER_ID).unique()
    day = day_events(night / CLEAN_FILE, accepted_files(refresh_work_dir(config.data_dir, run_date)))
    history = touched_events(day, touched)
    history.write_parquet(out / HISTORY_FILE)
    seqs = build_sequences(history.lazy(), config.sequences, night / SEQUENCES_DIR)
    return write_sequences(seqs, out / SEQUENCES_DIR)


@task(name="refresh-score", cache_policy=NO_CACHE, timeout_seconds=1800)
def score_touched(config: NightrecConfig, version: str, seq_dir: Path) -> Path:
    """Top-K of the touched users from the serving model, with the nightly's scoring kernel."""
    from lightning_modules.scoring import score_users, scoring_device
    from nightrec.layout import models_dir

    model_dir = models_dir(config.data_dir) / version
    if not model_dir.is_dir():
        raise NightrecError(f"{model_dir}: the model that served the night is gone; run the nightly")
    path = seq_dir.parent / SCORES_FILE
    score_users(model_dir, seq_dir, config.k, device=scoring_device(config.train.accelerator)).write_parquet(path)
    return path


@task(name="refresh-fallback", cache_policy=NO_CACHE, timeout_seconds=1800)
def assemble_touched(
    config: NightrecConfig, run_date: date, out: Path, scores: Path | None, version: str | None
) -> Path:
    """The touched users' complete lists, as the nightly assembles them: the model's list where it
    has one, popularity over the night and the day so far for the rest (or to fill a short list)."""
    from nightrec.fallback.recommend import build_recommendations

    history = pl.read_parquet(out / HISTORY_FILE)
    touched = history.get_column(USER_ID).unique()
    popular = day_events(run_dir(config.data_dir, run_date) / CLEAN_FILE, accepted_files(out.parent))
    model_scores = pl.read_parquet(scores) if scores is not None else None
    # segments are sized over everyone active, as the night sized them (only with a segment column)
    active = popular.select(USER_ID).unique().collect()[USER_ID] if config.popularity.segment_column else None
    recs = build_recommendations(
        history,
        run_date,
        config,
        model_scores=model_scores,
        model_version=version,
        popularity_events=popular,
        active_users=active,
    ).filter(pl.col(USER_ID).is_in(touched.implode()))
    path = out / RECOMMENDATIONS_FILE
    recs.write_parquet(path)
    return path


@task(name="refresh-publish", cache_policy=NO_CACHE, timeout_seconds=1800, **IO_RETRIES)
def publish_touched(recs_path: Path, config: NightrecConfig, run_date: date, refreshed_at: datetime) -> dict:
    """Only the touched users' rows, to every configured target, atomically; keyed as the night's
    rows are (pseudonyms, or the source's ids with ``privacy.publish_external_ids``)."""
    from nightrec.privacy.external import published_ids
    from nightrec.publish.refresh import publish_refresh

    return publish_refresh(published_ids(pl.read_parquet(recs_path), config), config, run_date, refreshed_at)


def source_counts(recs_path: Path) -> dict[str, int]:
    """Refreshed users by where their list came from (the source of their first row)."""
    firsts = pl.read_parquet(recs_path).filter(pl.col("rank") == 1)
    counts = firsts.group_by("source").len().sort("source")
    return dict(zip(counts.get_column("source"), counts.get_column("len"), strict=True))


def refresh_artifact(summary: dict[str, Any]) -> str:
    """``refresh-report``: users refreshed, events read, quarantined, seconds per stage."""
    v = summary["validation"]
    reasons = ", ".join(f"{k} {n}" for k, n in v["by_reason"].items() if n) or "none"
    stages = ", ".join(f"{k} {s:.2f}" for k, s in summary["seconds"].items())
    lines = [
        f"# Refresh of night {summary['run_date']} at {summary['refreshed_at']}",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| users refreshed | {summary['users_refreshed']} |",
        f"| events read (after {summary['watermark_before']}) | {v['rows_in']} |",
        f"| accepted | {v['rows_clean']} |",
        f"| quarantined | {v['rows_quarantined']} ({reasons}) |",
        f"| lists by source | {summary.get('sources') or '-'} |",
        f"| model | {summary['model_version'] or 'none (popularity)'} |",
        f"| seconds | {stages} |",
        f"| watermark now | {summary['watermark']} |",
    ]
    create_markdown_artifact(
        key=REPORT_KEY, markdown="\n".join(lines), description=f"refresh {summary['refreshed_at']}"
    )
    return REPORT_KEY


def load_summary(state) -> dict[str, Any]:
    """A refresh run's summary, or ``{"skipped": why}`` for a Cancelled one."""
    if state.is_cancelled():
        return {"skipped": state.message}
    return state.result()
