"""Sequence build throughput: nightrec (Polars) vs a plain pandas build vs the scan+sort floor.

    nice -n 10 python benchmarks/bench_sequences.py --rows 1000000 10000000

Each measurement runs in a fresh subprocess so its peak RSS is its own. Synthetic events: user,
item, type, timestamp (100k users and 50k items by default, Zipf-like item popularity, log-normal
user activity, 30 days), written once per size as Parquet under --workdir. The pandas build is
checked to produce the same train/valid/test/full frames as nightrec before its time is compared.
Numbers are printed, never asserted: the machine is shared and timings are noisy.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nightrec.config import SequenceConfig  # noqa: E402
from nightrec.layout import FULL_FILE, SPLIT_FILES, TRAIN_FILE  # noqa: E402
from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID  # noqa: E402
from nightrec.sequences.build import build_sequences, write_sequences  # noqa: E402

TYPES = np.array(["view", "click", "add_to_cart", "purchase"])
TYPE_P = [0.7, 0.2, 0.07, 0.03]
DAYS = 30
START_US = 1_767_225_600_000_000  # 2026-01-01 UTC


def generate(path: Path, rows: int, users: int, items: int, seed: int = 0, shuffled: bool = False) -> None:
    """Write ``rows`` synthetic events to ``path``, time-ordered like a real log unless ``shuffled``."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, size=users)
    user = rng.choice(users, size=rows, p=activity / activity.sum())
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    item = rng.permutation(items)[rng.choice(items, size=rows, p=popularity / popularity.sum())]
    ts = np.sort(rng.integers(0, DAYS * 86_400_000_000, size=rows)) + START_US
    frame = pl.DataFrame({"u": user, "i": item, "t": rng.choice(4, size=rows, p=TYPE_P), "ts": ts})
    if shuffled:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    frame.select(
        pl.format("u{}", pl.col("u").cast(pl.String).str.zfill(6)).alias(USER_ID),
        pl.format("i{}", pl.col("i").cast(pl.String).str.zfill(5)).alias(ITEM_ID),
        pl.col("t").replace_strict(list(range(4)), TYPES.tolist(), return_dtype=pl.String).alias(EVENT_TYPE),
        pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC").cast(EVENT_SCHEMA[TIMESTAMP]).alias(TIMESTAMP),
    ).write_parquet(path)


def floor(path: Path, out: Path, cfg: SequenceConfig) -> None:
    """Only scan the Parquet and sort it per user by time: no build can be cheaper."""
    pl.scan_parquet(path).sort([USER_ID, TIMESTAMP], maintain_order=True).collect()


def nightrec_build(path: Path, out: Path, cfg: SequenceConfig) -> None:
    write_sequences(build_sequences(pl.scan_parquet(path), cfg), out)


def pandas_build(path: Path, out: Path, cfg: SequenceConfig) -> None:
    """The same build as a pandas user would write it: sort, groupby-agg to lists, split per user."""
    import pandas as pd

    df = pd.read_parquet(path)
    df = df.drop_duplicates(subset=[USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP])
    counts = df[ITEM_ID].value_counts()
    counts = counts[counts >= cfg.min_item_count].rename_axis(ITEM_ID).reset_index(name="count")
    counts = counts.sort_values(["count", ITEM_ID], ascending=[False, True], kind="stable")
    item_idx = pd.Series(np.arange(1, len(counts) + 1, dtype="int32"), index=counts[ITEM_ID])
    df["item_idx"] = df[ITEM_ID].map(item_idx)
    df = df.dropna(subset=["item_idx"])
    users = np.sort(df[USER_ID].unique())
    df["user_idx"] = df[USER_ID].map(pd.Series(np.arange(len(users), dtype="int32"), index=users))
    df = df.sort_values(["user_idx", TIMESTAMP], kind="stable")
    timeout = pd.Timedelta(minutes=cfg.session_timeout_minutes)
    new_session = df.groupby("user_idx")[TIMESTAMP].diff().gt(timeout).astype("int32")
    df["session"] = new_session.groupby(df["user_idx"]).cumsum()
    if cfg.collapse_repeats:
        df = df[df["item_idx"] != df.groupby("user_idx")["item_idx"].shift()]
    df["item_idx"] = df["item_idx"].astype("int32")
    seqs = df.groupby("user_idx")[["item_idx", "session"]].agg(list)
    train, valid, test, full = [], [], [], []
    for user, items, sessions in zip(seqs.index, seqs["item_idx"], seqs["session"], strict=True):
        n = len(items)
        held = min(2, n - 1)
        if n - held >= 2:
            train.append((user, items[: n - held], sessions[: n - held]))
        if n >= 3:
            valid.append((user, items[: n - 2][-cfg.max_len :], items[n - 2]))
        if n >= 2:
            test.append((user, items[: n - 1][-cfg.max_len :], items[n - 1]))
        full.append((user, items[-cfg.max_len :]))
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(train, columns=["user_idx", "items", "sessions"]).to_parquet(out / TRAIN_FILE)
    for name, rows in (("valid", valid), ("test", test)):
        pd.DataFrame(rows, columns=["user_idx", "history", "target"]).to_parquet(out / SPLIT_FILES[name])
    pd.DataFrame(full, columns=["user_idx", "history"]).to_parquet(out / FULL_FILE)


PHASES = {"floor": floor, "nightrec": nightrec_build, "pandas": pandas_build}


def run_phase(phase: str, path: Path, out: Path) -> dict:
    """Run one phase in a fresh interpreter; returns its wall time and peak RSS."""
    cmd = [sys.executable, __file__, "--phase", phase, "--input", str(path), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_result(a: Path, b: Path) -> bool:
    for name in ("train", "valid", "test", "full"):
        left = pl.read_parquet(a / SPLIT_FILES[name]).sort("user_idx")
        right = pl.read_parquet(b / SPLIT_FILES[name]).sort("user_idx")
        right = right.select([pl.col(c).cast(left.schema[c]) for c in left.columns])
        if not left.equals(right):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-data" / "sequences")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per phase; the fastest is reported.")
    parser.add_argument("--shuffled", action="store_true", help="Events in random order, not time order.")
    parser.add_argument("--no-pandas", action="store_true", help="Skip the (slow) pandas build.")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = SequenceConfig()

    if args.phase:  # child process: one measurement
        start = time.perf_counter()
        PHASES[args.phase](args.input, args.out, cfg)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"config: {cfg.model_dump()}  polars {pl.__version__}  cpus {os.cpu_count()}  load {os.getloadavg()}")
    results = {}
    for rows in args.rows:
        order = "-shuffled" if args.shuffled else ""
        path = args.workdir / f"events-{rows}-{args.users}u-{args.items}i{order}.parquet"
        if not path.is_file():
            start = time.perf_counter()
            generate(path, rows, args.users, args.items, shuffled=args.shuffled)
            print(f"generated {rows:,} events in {time.perf_counter() - start:.1f}s -> {path}")
        res = {}
        for phase in ("floor", "nightrec") if args.no_pandas else ("floor", "nightrec", "pandas"):
            runs = [run_phase(phase, path, args.workdir / f"out-{phase}-{rows}") for _ in range(args.repeat)]
            res[phase] = min(runs, key=lambda r: r["seconds"])
            print(
                f"{rows:>11,} {phase:>9}: {res[phase]['seconds']:8.2f} s  "
                f"{rows / res[phase]['seconds']:>12,.0f} events/s  peak RSS {res[phase]['peak_rss_mb']:7.0f} MB"
            )
        line = f"{rows:>11,} nightrec/floor = {res['nightrec']['seconds'] / res['floor']['seconds']:.2f}x (target <= 3)"
        if "pandas" in res:
            equal = same_result(args.workdir / f"out-nightrec-{rows}", args.workdir / f"out-pandas-{rows}")
            ratio = res["pandas"]["seconds"] / res["nightrec"]["seconds"]
            line += f"  pandas/nightrec = {ratio:.2f}x (target >= 3)  same result as pandas: {equal}"
        print(line)
        results[rows] = res
    if len(args.rows) >= 2:
        small, large = args.rows[0], args.rows[-1]
        ratio = results[large]["nightrec"]["seconds"] / results[small]["nightrec"]["seconds"]
        print(f"scaling: {large:,} rows cost {ratio:.2f}x {small:,} rows ({large // small}x the events; target <= 12x)")
        print(f"peak RSS at {large:,}: {results[large]['nightrec']['peak_rss_mb']:.0f} MB (target < 3072 MB)")


if __name__ == "__main__":
    main()
