"""Benchmark: the full behaviour report (metrics, figures, HTML, JSON) on ~10M synthetic events.

Prints each stage's seconds, events per second, the ratio to a reference measured in the same
run (one Polars sort of the events by user and time, the least any sessionisation must do) and to
the 60 s budget, and the peak RSS. Run it niced: ``nice -n 10 python benchmarks/bench_behavior.py``.
The generated log is cached under ``bench-data/`` (ignored by git) so reruns time the analysis only.
"""

import argparse
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

from nightrec.behavior.analyze import analyze_events
from nightrec.behavior.figures import render_figures
from nightrec.behavior.report import write_behavior_report
from nightrec.config import NightrecConfig
from nightrec.ingest.synthetic import SyntheticSpec, generate_events
from nightrec.layout import REPORT_HTML
from nightrec.schema import TIMESTAMP, USER_ID

BUDGET_S = 60.0
END = date(2026, 3, 10)


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def synthetic_events(target: int, days: int, items: int, cache: Path) -> pl.DataFrame:
    """About ``target`` events: users scaled from a small calibration run of the same generator."""
    path = cache / f"behavior-{target}-{days}d-{items}i.parquet"
    if path.exists():
        return pl.read_parquet(path)
    probe = generate_events(SyntheticSpec(users=2000, items=items, days=days, seed=1, end_date=END))
    users = max(1, round(target * 2000 / probe.height))
    events = generate_events(SyntheticSpec(users=users, items=items, days=days, seed=1, end_date=END))
    cache.mkdir(parents=True, exist_ok=True)
    events.write_parquet(path)
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--cache", type=Path, default=Path("bench-data"))
    args = parser.parse_args()

    start = time.perf_counter()
    events = synthetic_events(args.events, args.days, args.items, args.cache)
    load_s = time.perf_counter() - start
    print(
        f"events: {events.height:,} ({events[USER_ID].n_unique():,} users, {args.days} days), loaded in {load_s:.1f}s"
    )

    start = time.perf_counter()
    events.sort(USER_ID, TIMESTAMP)
    reference_s = time.perf_counter() - start

    config = NightrecConfig()
    start = time.perf_counter()
    metrics, _ = analyze_events(events, config)
    metrics_s = time.perf_counter() - start
    start = time.perf_counter()
    render_figures(metrics)
    figures_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = write_behavior_report(events, Path(out), config)
        total_s = time.perf_counter() - start
        html_mib = (Path(out) / REPORT_HTML).stat().st_size / 2**20

    print(f"reference (one sort by user, time): {reference_s:.2f}s")
    print(f"metrics:            {metrics_s:.2f}s  ({metrics_s / reference_s:.1f}x reference)")
    print(f"figures:            {figures_s:.2f}s")
    print(
        f"full report:        {total_s:.2f}s  ({total_s / reference_s:.1f}x reference, "
        f"{total_s / BUDGET_S:.0%} of the {BUDGET_S:.0f}s budget) -> "
        f"{'PASS' if total_s < BUDGET_S else 'OVER BUDGET'}"
    )
    print(f"throughput:         {events.height / total_s / 1e6:.2f}M events/s; report.html {html_mib:.1f} MiB")
    print(f"sessions {report['headline']['sessions']:,}; drift flagged: {report['drift']}")
    print(f"peak RSS:           {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
