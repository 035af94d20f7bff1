"""User shards: the night's events split by a stable hash of ``user_id`` (``orchestration.shards``).

Everything after deduplication is per user, so a shard holds whole users and the per-shard
stages need nothing from another shard. The hash is CRC-32 of the id's UTF-8 bytes, the same in
every process, machine and release; a missing user id falls in shard 0. Each part keeps the
row's position in the night's events (``ROW``), so a reduce restores the single-process order
exactly and every later stage sees the same rows in the same order as with one shard.
"""

import shutil
import zlib
from pathlib import Path

import polars as pl

from nightrec.ingest.runs import write_parquet_atomic
from nightrec.layout import SHARDS_DIR
from nightrec.schema import USER_ID

SHARD = "shard"
ROW = "__row"


def shard_of(user_ids: pl.Series, n: int) -> pl.Series:
    """Each id's shard in ``0..n-1`` (UInt32), aligned with ``user_ids``; hashed once per distinct id."""
    if n == 1:
        return pl.repeat(0, user_ids.len(), dtype=pl.UInt32, eager=True).alias(SHARD)
    distinct = user_ids.drop_nulls().unique()
    codes = pl.Series(SHARD, [zlib.crc32(u.encode()) % n for u in distinct.to_list()], dtype=pl.UInt32)
    lookup = pl.DataFrame({USER_ID: distinct, SHARD: codes})
    frame = pl.DataFrame({USER_ID: user_ids}).join(lookup, on=USER_ID, how="left", maintain_order="left")
    return frame.get_column(SHARD).fill_null(0)


def in_shard(frame: pl.DataFrame, shard: int, n: int) -> pl.DataFrame:
    """The rows of ``frame`` whose ``user_id`` falls in ``shard``, in their order."""
    return frame.filter(shard_of(frame.get_column(USER_ID), n) == shard)


def shard_dir(run_dir: Path, stage: str) -> Path:
    """``runs/<date>/shards/<stage>/``."""
    return Path(run_dir) / SHARDS_DIR / stage


def part_file(run_dir: Path, stage: str, shard: int) -> Path:
    return shard_dir(run_dir, stage) / f"part-{shard:05d}.parquet"


def split_by_user(events_path: Path, n: int, stage: str = "events") -> list[Path]:
    """Write ``events_path`` as ``n`` parts under ``runs/<date>/shards/<stage>/`` (one per shard,
    empty ones included), each row with its position in the file as ``ROW``; returns the parts."""
    events_path = Path(events_path)
    events = pl.read_parquet(events_path).with_row_index(ROW)
    shards = shard_of(events.get_column(USER_ID), n)
    parts = []
    for shard in range(n):
        path = part_file(events_path.parent, stage, shard)
        write_parquet_atomic(events.filter(shards == shard), path)
        parts.append(path)
    return parts


def merge_parts(parts: list[Path]) -> pl.DataFrame:
    """The parts as one frame in the order of the night's events (by ``ROW``, which is kept)."""
    frames = [pl.read_parquet(p) for p in parts]
    return pl.concat(frames, how="vertical").sort(ROW)


def remove_parts(run_dir: Path) -> bool:
    """Delete ``runs/<date>/shards/`` once the reduces have read it: its parts are copies of the
    night's events (and derived rows) that nothing reads later. Returns whether it existed."""
    parts = Path(run_dir) / SHARDS_DIR
    existed = parts.is_dir()
    shutil.rmtree(parts, ignore_errors=True)
    return existed
