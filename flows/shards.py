"""The per-shard stages (``orchestration.shards`` > 1, or ``executor: dask``) as mapped Prefect
tasks, on the task runner ``flows.executor`` opens for the night.

Each stage maps one task over the user shards, then one task reduces their parts:

- validation: each shard computes the row rules' masks and keeps its clean rows; the reduce puts
  the masks back in the night's order, writes the clean and quarantine files and runs the one
  GX verdict over every row;
- sequences: each shard codes, sorts and deduplicates its users' events; the reduce numbers
  items and users once (summed counts, first events); each shard then builds its users' lists
  with those numbers, and the reduce splits them and writes the one sequences folder;
- scoring and the table's staging files: each shard scores its users and assembles their rows
  (the model's lists, popularity for the rest) from the night's segments and lists, ranked once
  over every user (the ``popularity`` task); the reduce
  concatenates the parts into ``recommendations.parquet``, which publishing swaps in atomically.

Training stays global (one model, in its own subprocess). Workers exchange paths under
the data directory, never data: on a cluster it must be storage every worker mounts.
"""

import json
import os
from datetime import date
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import unmapped

from flows.executor import shard_results
from nightrec.config import NightrecConfig
from nightrec.ingest.runs import write_json, write_parquet_atomic
from nightrec.layout import CLEAN_FILE, FALLBACK_FILE, RECOMMENDATIONS_FILE
from nightrec.schema import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID, USER_IDX
from nightrec.shards import in_shard, part_file, remove_parts, shard_dir, split_by_user

# A drill for the retry path: the first scoring task to start in a process with this variable set
# creates the named file and kills its own process (a Dask worker), as a crashed machine would.
KILL_DRILL = "NIGHTREC_DRILL_KILL_SCORE_WORKER"


@task(name="ingest-shards", cache_policy=NO_CACHE, timeout_seconds=3600)
def shard_events(events_path: Path, shards: int) -> list[Path]:
    """``runs/<date>/shards/events/part-NNNNN.parquet``: the night's events by user shard."""
    return split_by_user(events_path, shards)


@task(name="validate-shard", cache_policy=NO_CACHE, timeout_seconds=3600, retries=2, retry_delay_seconds=1)
def validate_shard(run_dir: Path, config: NightrecConfig, run_date: date, shard: int) -> Path:
    """The row rules' masks of one shard (``shards/flags/``) and its clean rows (``shards/clean/``),
    which the later shard tasks read instead of the whole night."""
    from expectations.runner import shard_flags

    flags, clean = shard_flags(part_file(run_dir, "events", shard), config, run_date)
    write_parquet_atomic(clean, part_file(run_dir, "clean", shard))
    return write_parquet_atomic(flags, part_file(run_dir, "flags", shard))


@task(name="validate", cache_policy=NO_CACHE, timeout_seconds=3600)
def validate_merged(events_path: Path, flag_parts: list[Path], config: NightrecConfig, run_date: date):
    from expectations.runner import validate_sharded

    summary = validate_sharded(events_path, flag_parts, config, run_date)
    return events_path.parent / CLEAN_FILE, summary


def validate(runner: TaskRunner, events_path: Path, config: NightrecConfig, run_date: date) -> tuple[Path, dict]:
    """The validation stage over ``orchestration.shards`` shards: same files and verdict as one process."""
    shards = list(range(config.orchestration.shards))
    shard_events(events_path, len(shards))
    parameters = {"run_dir": unmapped(events_path.parent), "config": unmapped(config), "run_date": unmapped(run_date)}
    futures = runner.map(validate_shard, {**parameters, "shard": shards})
    return validate_merged(events_path, shard_results(futures, "validate"), config, run_date)


@task(name="sequences-shard", cache_policy=NO_CACHE, timeout_seconds=3600, retries=2, retry_delay_seconds=1)
def order_shard(run_dir: Path, config: NightrecConfig, shard: int) -> Path:
    """Phase one of one shard's sequences: its clean events coded, sorted and deduplicated."""
    from nightrec.sequences.build import order_events
    from nightrec.sequences.parts import save_rows

    rows = order_events(pl.scan_parquet(part_file(run_dir, "clean", shard)), config.sequences)
    return save_rows(rows, shard_dir(run_dir, "sequences") / f"rows-{shard:05d}")


@task(name="sequences-shard", cache_policy=NO_CACHE, timeout_seconds=3600, retries=2, retry_delay_seconds=1)
def number_shard(rows_dir: Path, vocab_dir: Path, config: NightrecConfig) -> Path:
    """Phase two of one shard's sequences: one row of lists per user, numbered by the vocabularies."""
    from nightrec.sequences.build import user_sequences
    from nightrec.sequences.parts import load_rows, load_vocab, save_sequences

    seqs, dropped = user_sequences(load_rows(rows_dir), load_vocab(vocab_dir), config.sequences)
    return save_sequences(seqs, dropped, rows_dir)


@task(name="sequences-vocab", cache_policy=NO_CACHE, timeout_seconds=3600)
def vocab_reduce(rows_dirs: list[Path], config: NightrecConfig, previous_vocab: Path | None):
    """The vocabularies over every shard (summed counts, first events), for phase two."""
    from nightrec.sequences.build import vocabularies
    from nightrec.sequences.parts import save_vocab, shard_summaries

    vocab = vocabularies(*shard_summaries(rows_dirs), config.sequences, previous_vocab)
    return vocab, save_vocab(vocab, rows_dirs[0].parent / "vocab")


@task(name="sequences", cache_policy=NO_CACHE, timeout_seconds=3600)
def sequences_reduce(rows_dirs: list[Path], seq_parts: list[Path], vocab, config: NightrecConfig, run_dir: Path):
    """``runs/<date>/sequences/`` from the shards' per-user sequences, as one process writes it."""
    from nightrec.sequences.build import split_sequences, write_run_sequences
    from nightrec.sequences.parts import shard_totals

    seqs = pl.concat([pl.read_parquet(p) for p in seq_parts], how="vertical_relaxed").sort(USER_IDX)
    events_in, dropped = shard_totals(rows_dirs)
    return write_run_sequences(split_sequences(seqs, vocab, config.sequences, events_in, dropped), run_dir)


def sequences(runner: TaskRunner, clean_path: Path, config: NightrecConfig, previous_vocab: Path | None) -> Path:
    """The sequences stage over the shards' clean parts: same folder as one process builds."""
    run_dir, shards = clean_path.parent, list(range(config.orchestration.shards))
    rows = shard_results(
        runner.map(order_shard, {"run_dir": unmapped(run_dir), "config": unmapped(config), "shard": shards}),
        "sequences",
    )
    vocab, vocab_dir = vocab_reduce(rows, config, previous_vocab)
    futures = runner.map(number_shard, {"rows_dir": rows, "vocab_dir": unmapped(vocab_dir), "config": unmapped(config)})
    return sequences_reduce(rows, shard_results(futures, "sequences"), vocab, config, run_dir)


@task(name="score-shard", cache_policy=NO_CACHE, timeout_seconds=3600, retries=2, retry_delay_seconds=1)
def score_shard(model_dir: Path, sequences_dir: Path, k: int, accelerator: str, shard: int, shards: int) -> Path:
    """One shard's top-K (``shards/scores/``)."""
    from lightning_modules.scoring import score_users, scoring_device

    drill = os.environ.get(KILL_DRILL)
    if drill and not Path(drill).exists():
        Path(drill).write_text(f"scoring shard {shard} killed its worker (pid {os.getpid()})\n")
        os._exit(1)
    scores = score_users(model_dir, sequences_dir, k, device=scoring_device(accelerator), shard=(shard, shards))
    return write_parquet_atomic(scores, part_file(sequences_dir.parent, "scores", shard))


@task(name="fallback-shard", cache_policy=NO_CACHE, timeout_seconds=3600, retries=2, retry_delay_seconds=1)
def assemble_shard(
    clean_path: Path,
    scores_part: Path | None,
    ranked_path: Path,
    config: NightrecConfig,
    model_version: str | None,
    shard: int,
    shards: int,
    choices_path: Path | None = None,
) -> Path:
    """One shard's rows of tonight's table (``shards/recommendations/``): the model's lists where
    there are scores, popularity from the whole night's segments and lists for everyone else;
    ``choices_path``, the served model's choices of new items (``flows.new_items``)."""
    from nightrec.fallback.history import read_user_table
    from nightrec.fallback.recommend import NightRankings, build_recommendations

    pop = config.popularity
    # the shard's clean rows, as validation kept them: the night's clean rows of its users, in order
    events = pl.read_parquet(
        part_file(clean_path.parent, "clean", shard), columns=[USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP]
    )
    users = read_user_table(pop.users_file, pop.segment_column) if pop.users_file is not None else None
    night = ranked_path.parent
    rankings = NightRankings(
        pl.read_parquet(night / "groups.parquet"),
        pl.read_parquet(night / "ranked.parquet"),
        pl.read_parquet(night / "new_items.parquet").get_column(ITEM_ID).to_list(),
        json.loads((night / "content_weight.json").read_text())["content_weight"],
    )
    cold = shard_cold_start(config, rankings, choices_path, events)
    recs = build_recommendations(
        events,
        config.run_date,
        config,
        model_scores=pl.read_parquet(scores_part) if scores_part is not None else None,
        model_version=model_version,
        users=in_shard(users, shard, shards) if users is not None else None,
        rankings=rankings,
        cold=cold,
    )
    return write_parquet_atomic(recs, part_file(clean_path.parent, "recommendations", shard))


def shard_cold_start(config: NightrecConfig, rankings, choices_path: Path | None, events: pl.DataFrame):
    """The content recommender with the whole night's new items and the served model's choices of
    them for this shard's users (None without an item table)."""
    from dataclasses import replace

    from nightrec.fallback.cold import cold_start, with_choices

    built = cold_start(config, None, config.run_date)
    if built is None:
        return None
    return with_choices(replace(built, new_items=rankings.new_items or []), choices_path, events)


@task(name="fallback", cache_policy=NO_CACHE, timeout_seconds=3600)
def merge_recommendations(parts: list[Path], clean_path: Path, ranked_path: Path, config: NightrecConfig):
    """``recommendations.parquet`` from the shards' parts, and the new-user list."""
    from nightrec.fallback.recommend import new_user_list

    recs = pl.concat([pl.read_parquet(p) for p in parts], how="vertical")
    out = write_parquet_atomic(recs, clean_path.parent / RECOMMENDATIONS_FILE)
    new_users = new_user_list(pl.read_parquet(ranked_path), config.run_date, config.k)
    return out, write_parquet_atomic(new_users, clean_path.parent / FALLBACK_FILE)


@task(name="popularity", cache_policy=NO_CACHE, timeout_seconds=3600)
def rank_popularity(clean_path: Path, config: NightrecConfig) -> Path:
    """The night's popularity, once for every shard: the global ranking (``popularity.parquet``,
    also the new-user list), every user's segment group, each group's list and the new items."""
    from nightrec.fallback.cold import cold_start, keep_set_aside
    from nightrec.fallback.popularity import popularity_scores
    from nightrec.fallback.recommend import night_rankings

    events = pl.read_parquet(clean_path, columns=[USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP])
    ranked = popularity_scores(events, config.run_date, config.popularity)
    cold = cold_start(config, events, config.run_date)
    for path, rows in keep_set_aside(config, cold, clean_path.parent).items():
        get_run_logger().warning(
            f"{rows} row(s) of the item or user table set aside (no id, or a repeated one): {path}"
        )
    rankings = night_rankings(events, config.run_date, config, global_ranked=ranked, cold=cold)
    out = shard_dir(clean_path.parent, "popularity")
    write_parquet_atomic(rankings.groups, out / "groups.parquet")
    write_parquet_atomic(rankings.ranked, out / "ranked.parquet")
    # first-seen dates need every user's events: the shards take tonight's new items from here
    write_parquet_atomic(
        pl.DataFrame({ITEM_ID: rankings.new_items or []}, schema={ITEM_ID: pl.String}), out / "new_items.parquet"
    )
    write_json(out / "content_weight.json", {"content_weight": rankings.content_weight})
    return write_parquet_atomic(ranked, out / "popularity.parquet")


def serve(
    runner: TaskRunner,
    config: NightrecConfig,
    seq_dir: Path,
    clean_path: Path,
    serving: Path | None,
    choices: Path | None = None,
) -> tuple[Path, Path]:
    """Scoring and the table's rows per shard, then tonight's ``recommendations.parquet``."""
    n = config.orchestration.shards
    shards = list(range(n))
    scores: list[Path | None] = [None] * n
    if serving is not None:
        futures = runner.map(
            score_shard,
            {
                "model_dir": unmapped(serving),
                "sequences_dir": unmapped(seq_dir),
                "k": unmapped(config.k),
                "accelerator": unmapped(config.train.accelerator),
                "shard": shards,
                "shards": unmapped(n),
            },
        )
        scores = shard_results(futures, "score")
        get_run_logger().info(f"score: {n} shards scored by `{serving.name}`")
    ranked = rank_popularity(clean_path, config)
    futures = runner.map(
        assemble_shard,
        {
            "clean_path": unmapped(clean_path),
            "scores_part": scores,
            "ranked_path": unmapped(ranked),
            "config": unmapped(config),
            "model_version": unmapped(serving.name if serving is not None else None),
            "shard": shards,
            "shards": unmapped(n),
            "choices_path": unmapped(choices),
        },
    )
    paths = merge_recommendations(shard_results(futures, "fallback"), clean_path, ranked, config)
    remove_parts(clean_path.parent)  # copies of the night's events: none outlives the night
    return paths
