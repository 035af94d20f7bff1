"""Validate synthetic nights of 1M and 10M events; print events/second, peak memory and the cost ratio.

Each size runs in its own process (so peak memory is that size's), after a small warm-up
validation that pays for importing GX and building its context. The timed call is the flow's
``validate_file``: read the events, quarantine, clean/quarantine Parquet, GX suites, Data Docs,
``validation.json``. Target: 10M under 60 s and at most 12x the cost of 1M.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/bench_validation.py [--sizes 1000000 10000000]
"""

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

RUN_DATE = date(2026, 3, 11)
TARGET_SECONDS = 60.0
TARGET_RATIO = 12.0


def generate(rows: int, path: Path) -> dict:
    """``rows`` events over 7 days before RUN_DATE with faults of known counts (0.01% of rows each)."""
    import numpy as np
    import polars as pl

    from nightrec.ingest.synthetic import FaultSpec, inject_faults
    from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, SESSION_ID, TIMESTAMP, USER_ID, VALUE

    rng = np.random.default_rng(0)
    start = datetime.combine(RUN_DATE - timedelta(days=7), datetime.min.time(), tzinfo=UTC)
    users = rng.integers(0, max(rows // 40, 1), rows)
    items = np.minimum(rng.zipf(1.3, rows), 100_000)
    seconds = np.sort(rng.integers(0, 7 * 86_400_000_000, rows))
    kinds = np.array(["view", "click", "add_to_cart", "purchase"])[rng.choice(4, rows, p=[0.7, 0.2, 0.07, 0.03])]
    events = pl.DataFrame(
        {
            USER_ID: pl.Series(users).cast(pl.String),
            ITEM_ID: pl.Series(items).cast(pl.String),
            EVENT_TYPE: kinds,
            TIMESTAMP: pl.Series(seconds).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            + (start - datetime(1970, 1, 1, tzinfo=UTC)),
            SESSION_ID: pl.Series(users // 3).cast(pl.String),
            VALUE: np.where(kinds == "purchase", 20.0, np.nan),
        }
    ).with_columns(pl.col(VALUE).fill_nan(None))
    events = events.unique(maintain_order=True).cast(EVENT_SCHEMA)
    per_fault = max(rows // 10_000, 1)
    faults = replace(
        FaultSpec(),
        **{name: per_fault for name in ("null_user_id", "null_item_id", "null_event_type", "null_timestamp")},
        unknown_event_type=per_fault,
        future_timestamp=per_fault,
        duplicate=per_fault,
    )
    events = inject_faults(events, faults, RUN_DATE, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    events.write_parquet(path)
    return {"rows": events.height, "faults": faults.__dict__}


def measure(path: Path) -> dict:
    """Time ``validate_file`` on ``path`` after a warm-up; report seconds, stages and peak RSS."""
    import resource

    import polars as pl

    from expectations.runner import validate_file
    from nightrec.config import NightrecConfig
    from nightrec.errors import NightrecError

    config = NightrecConfig(data_dir=path.parent / "data")
    warm = path.parent / "warm" / "events.parquet"
    warm.parent.mkdir(exist_ok=True)
    pl.read_parquet(path, n_rows=2000).write_parquet(warm)
    # The first rows are a single early day: the night-level checks fail, which is fine for a warm-up.
    with contextlib.suppress(NightrecError):
        validate_file(warm, config, RUN_DATE)
    started = time.perf_counter()
    report = validate_file(path, config, RUN_DATE)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": report["rows_in"],
        "seconds": seconds,
        "peak_mb": peak_mb,
        "stages": report["timings"],
        "quarantined": report["rows_quarantined"],
        "reconciled": report["reconciled"],
        "status": report["status"],
    }


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--workdir", type=Path, default=None, help="Where the synthetic nights go (default: a temp dir)."
    )
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(generate(args.generate, args.path)))
        return
    if args.measure:
        print(json.dumps(measure(args.path)))
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = []
        for size in args.sizes:
            path = Path(tmp) / f"n{size}" / "runs" / RUN_DATE.isoformat() / "events.parquet"
            made = _child(["--generate", str(size), "--path", str(path)])
            result = _child(["--measure", "--path", str(path)])
            result["events_per_s"] = result["rows"] / result["seconds"]
            results.append(result)
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in result["stages"].items())
            print(
                f"{made['rows']:>11,} events: {result['seconds']:7.2f} s  {result['events_per_s']:>12,.0f} events/s  "
                f"peak {result['peak_mb']:8.0f} MB  quarantined {result['quarantined']:,}  "
                f"reconciled {result['reconciled']}  ({stages})",
                flush=True,
            )
        if len(results) >= 2:
            small, large = results[0], results[-1]
            ratio = large["seconds"] / small["seconds"]
            rows_ratio = large["rows"] / small["rows"]
            print(
                f"cost ratio {large['rows']:,} / {small['rows']:,} events: {ratio:.2f}x for {rows_ratio:.1f}x rows "
                f"(target <= {TARGET_RATIO:g}x): {'met' if ratio <= TARGET_RATIO else 'NOT met'}"
            )
            print(
                f"largest night: {large['seconds']:.1f} s (target < {TARGET_SECONDS:g} s): "
                f"{'met' if large['seconds'] < TARGET_SECONDS else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
