"""Thin Prefect tasks over the core functions for the data stages. Tasks exchange paths, never
DataFrames.

Retries with back-off only where I/O can fail transiently (reading, publishing); deterministic
stages fail fast. Stages whose output is a pure function of their inputs are cached on the
content of their input paths plus the config (``flows.caching.CONTENT``), so rerunning a
completed night skips them; publishing is never cached (it is idempotent and cheap, and must
happen when the table was removed).
"""

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from expectations.load import ingest
from expectations.runner import validate_file
from flows.caching import CONTENT
from nightrec.config import NightrecConfig
from nightrec.errors import NightrecError, is_setup_error
from nightrec.ingest.input_files import resolve_files
from nightrec.ingest.runs import default_run_date, require_source, write_parquet_atomic
from nightrec.layout import (
    BEHAVIOR_DIR,
    CLEAN_FILE,
    EVENTS_FILE,
    FALLBACK_FILE,
    RECOMMENDATIONS_FILE,
)
from nightrec.publish.rollback import publish_night
from nightrec.schema import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID

# Exceptions that say the input, the data or the set-up is wrong: trying again cannot help.
PERMANENT = (NightrecError, ValueError, TypeError, KeyError, duckdb.Error, pl.exceptions.PolarsError)


def transient(task, task_run, state) -> bool:
    """Retry an I/O task only when its failure could be transient (a network or file-system hiccup)."""
    exc = state.result(raise_on_failure=False)
    if is_setup_error(exc):  # a missing permission or path, a read-only mount, do not come back in 30 s
        return False
    if isinstance(exc, OSError | TimeoutError | ConnectionError | duckdb.IOException):
        return True
    return not isinstance(exc, PERMANENT)


IO_RETRIES = {"retries": 2, "retry_delay_seconds": [5, 30], "retry_condition_fn": transient}
CACHED = {"cache_policy": CONTENT, "persist_result": True}


@task(name="resolve-run-date", cache_policy=NO_CACHE, timeout_seconds=600, **IO_RETRIES)
def resolve_run_date(config: NightrecConfig) -> date:
    return config.run_date or default_run_date(config)


def resolve_night(config: NightrecConfig) -> NightrecConfig:
    """The night's config with its run date resolved (the one place it is) and an absolute data
    directory: the trainer subprocess and GX do not share this process's working directory."""
    run_date = resolve_run_date(config)
    return config.model_copy(update={"run_date": run_date, "data_dir": config.data_dir.resolve()})


@task(name="locate-input", cache_policy=NO_CACHE, timeout_seconds=600, **IO_RETRIES)
def locate_input(config: NightrecConfig) -> list[Path]:
    """The input files tonight's source names (their content keys the ingest cache)."""
    return resolve_files(require_source(config))


@task(name="ingest", timeout_seconds=3600, **CACHED, **IO_RETRIES)
def ingest_events(config: NightrecConfig, run_date: date, source_files: list[Path], forget_log: Path) -> Path:
    """``runs/<date>/events.parquet``: forgotten users dropped and, when configured, ids pseudonymised
    (the forget log is an input, so a new request is never answered from the cache)."""
    from nightrec.privacy.ingest import protect_events

    def protect(events: pl.DataFrame) -> pl.DataFrame:
        return protect_events(events, config.data_dir, config.privacy)

    return ingest(require_source(config), config.format, config.run_dir(run_date) / EVENTS_FILE, protect)


@task(name="validate", timeout_seconds=3600, **CACHED)
def validate_events(events_path: Path, config: NightrecConfig, run_date: date) -> tuple[Path, dict]:
    summary = validate_file(events_path, config, run_date)
    return events_path.parent / CLEAN_FILE, summary


@task(name="behavior", timeout_seconds=3600, **CACHED)
def behavior_report(clean_path: Path, config: NightrecConfig, previous: Path | None) -> dict:
    """``runs/<date>/behavior/``: the behaviour report, its figures and the drift verdict."""
    from nightrec.behavior.report import write_behavior_report

    out = clean_path.parent / BEHAVIOR_DIR
    report = write_behavior_report(pl.read_parquet(clean_path), out, config, previous)
    return {
        "markdown": report["markdown"],
        "drift": report["drift"],
        "drift_message": report["drift_message"],
        "figures": {name: Path(path) for name, path in report["figures"].items()},
        "report_html": Path(report["report_html"]),
    }


@task(name="sequences", timeout_seconds=3600, **CACHED)
def build_sequences(clean_path: Path, config: NightrecConfig, previous_vocab: Path | None) -> Path:
    """``runs/<date>/sequences/`` from the clean events; ids stay those of ``previous_vocab``."""
    from nightrec.sequences.build import build_run_sequences

    return build_run_sequences(clean_path, config.sequences, previous_vocab)


@task(name="fallback", timeout_seconds=3600, **CACHED)
def assemble_recommendations(
    clean_path: Path,
    config: NightrecConfig,
    run_date: date,
    scores_path: Path | None,
    model_version: str | None,
    choices_path: Path | None = None,
) -> tuple[Path, Path]:
    """Tonight's table (the model's lists where there are scores, popularity for everyone else)
    and the list a brand-new user gets: ``runs/<date>/recommendations.parquet``, ``fallback.parquet``.
    ``choices_path``: the served model's choices of new items (``flows.new_items``)."""
    from nightrec.fallback.cold import cold_start, keep_set_aside, with_choices
    from nightrec.fallback.popularity import popularity_scores
    from nightrec.fallback.recommend import build_recommendations, fallback_list

    # only what histories and popularity read: at 30M events the other columns cost a second
    events = pl.read_parquet(clean_path, columns=[USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP])
    scores = pl.read_parquet(scores_path) if scores_path is not None else None
    ranked = popularity_scores(events, run_date, config.popularity)
    cold = with_choices(cold_start(config, events, run_date), choices_path)
    for path, rows in keep_set_aside(config, cold, clean_path.parent).items():
        get_run_logger().warning(
            f"{rows} row(s) of the item or user table set aside (no id, or a repeated one): {path}"
        )
    recs = build_recommendations(
        events, run_date, config, model_scores=scores, model_version=model_version, global_ranked=ranked, cold=cold
    )
    out = clean_path.parent / RECOMMENDATIONS_FILE
    new_users = clean_path.parent / FALLBACK_FILE
    write_parquet_atomic(recs, out)
    write_parquet_atomic(fallback_list(events, run_date, config, ranked), new_users)
    return out, new_users


@task(name="publish", cache_policy=NO_CACHE, timeout_seconds=3600, **IO_RETRIES)
def publish(recs_path: Path, fallback_path: Path, config: NightrecConfig, run_date: date) -> dict:
    """Every configured target; keyed by pseudonym unless ``privacy.publish_external_ids``."""
    return publish_night(recs_path, fallback_path, config, run_date)
