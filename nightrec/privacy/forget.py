"""Forgetting one user everywhere under the data directory (and in PostgreSQL).

A user is named by their pseudonym, so neither the forget flow's parameters nor the forget log
ever hold the raw id; rows are found by hashing each file's ids with the key, which finds them
whether the night was written with pseudonyms or with raw ids.
"""

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.layout import FORGET_LOG, USERS_FILE, models_dir
from nightrec.privacy.forget_log import record_request
from nightrec.privacy.pseudonyms import key_id, matching_ids, require_key
from nightrec.publish.journal import recover
from nightrec.publish.local import MANIFEST_FILE, PART_FILE, publish_duckdb, run_manifest
from nightrec.registry import request_retrain
from nightrec.schema import USER_ID
from nightrec.sequences.vocab import USER_IDX

TEXT_SUFFIXES = {".json", ".jsonl", ".html", ".md", ".csv", ".txt", ".log"}
REDACTED = "[forgotten]"


def _replace(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.forget-{os.getpid()}")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def _forget_in_parquet(path: Path, target: str, key, found: set[str]) -> int:
    """Drop the user's rows from one Parquet file (and, for a sequence vocabulary, their rows in
    the split files beside it by ``user_idx``); returns the rows removed."""
    if USER_ID not in pl.read_parquet_schema(path):
        return 0
    frame = pl.read_parquet(path)
    hits = matching_ids(frame.get_column(USER_ID), target, key)
    if not hits:
        return 0
    found |= hits
    doomed = frame.get_column(USER_ID).is_in(list(hits))
    removed = int(doomed.sum())
    kept = frame.filter(~doomed)
    if path.name == USERS_FILE and USER_IDX in frame.columns:
        kept = _renumber_users(path, kept)
    _replace(kept, path)
    if path.name == PART_FILE and (path.parent / MANIFEST_FILE).is_file():
        kept = pl.read_parquet(path)
        run_date = json.loads((path.parent / MANIFEST_FILE).read_text())["run_date"]
        manifest = run_manifest(kept, datetime.fromisoformat(run_date).date(), path)
        (path.parent / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return removed


def _renumber_users(path: Path, kept: pl.DataFrame) -> pl.DataFrame:
    """A sequence vocabulary without the forgotten users, its ``user_idx`` contiguous again (a
    vocabulary must be), and every split file beside it renumbered to match."""
    kept = kept.sort(USER_IDX)
    renumber = kept.select(USER_IDX, pl.int_range(pl.len(), dtype=pl.Int32).alias("__new"))
    for sibling in path.parent.glob("*.parquet"):
        if sibling != path and USER_IDX in pl.read_parquet_schema(sibling):
            rows = pl.read_parquet(sibling).join(renumber, on=USER_IDX, how="inner", maintain_order="left")
            _replace(rows.with_columns(pl.col("__new").alias(USER_IDX)).drop("__new"), sibling)
    return kept.with_columns(pl.int_range(pl.len(), dtype=pl.Int32).alias(USER_IDX))


def _redact_text(path: Path, pattern: re.Pattern) -> bool:
    """Replace the user's ids in a report or log (JSON, HTML, Markdown); True when any was there."""
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        return False
    redacted, count = pattern.subn(REDACTED, text)
    if count:
        path.write_text(redacted)
    return bool(count)


def forget_user(config: NightrecConfig, target: str, now: datetime | None = None) -> dict:
    """Remove the user whose pseudonym is ``target`` from every stored night, the
    sequences, every published table, then record the request and ask for a retrain.

    Returns what was deleted, by count: rows per file kind, files redacted, PostgreSQL rows.
    """
    key = require_key(config.privacy, "nightrec forget")
    data_dir = Path(config.data_dir)
    recover(data_dir)  # a publish killed half-way puts its files back before they are filtered
    found: set[str] = {target}
    rows: dict[str, int] = {}
    for path in sorted(data_dir.rglob("*.parquet")):
        removed = _forget_in_parquet(path, target, key, found)
        if removed:
            rows[path.relative_to(data_dir).as_posix()] = removed
    pattern = re.compile(
        r"(?<![A-Za-z0-9_])("
        + "|".join(re.escape(i) for i in sorted(found, key=len, reverse=True))
        + r")(?![A-Za-z0-9_])"
    )
    redacted = [
        p.relative_to(data_dir).as_posix()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.suffix in TEXT_SUFFIXES and p.name != FORGET_LOG and _redact_text(p, pattern)
    ]
    report: dict = {"rows": rows, "redacted": redacted, "postgres_rows": 0}
    if config.duckdb_path.is_file():
        publish_duckdb(data_dir, config.duckdb_path, config.publish.retention_days)
        report["duckdb"] = str(config.duckdb_path)
    pub = config.publish
    if pub.postgres_url is not None:
        from nightrec.publish.postgres import forget_users_pg

        deleted, _ = forget_users_pg(
            pub.postgres_url, lambda ids: matching_ids(ids, target, key), pub.postgres_schema, pub.postgres_table
        )
        report["postgres_rows"] = deleted
    when = now or datetime.now(UTC)
    report["request"] = record_request(data_dir, target, key_id(key), when)
    request_retrain(models_dir(data_dir), f"a user was forgotten at {when.isoformat(timespec='seconds')}")
    return report
