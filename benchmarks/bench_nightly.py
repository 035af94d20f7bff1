"""The whole nightly, end to end through Prefect, at shop scale: per-stage time, share, peak RSS.

    nice -n 10 python benchmarks/bench_nightly.py --size 3m      # 100k users, 50k items, 7 days
    nice -n 10 python benchmarks/bench_nightly.py --size 30m     # 1M users, 500k items
    python benchmarks/bench_nightly.py --users 2000 --items 1000 # a quick look
    nice -n 10 python benchmarks/bench_nightly.py --data amazon  # Amazon Sports (../shared/datasets)

Generates a synthetic log (``nightrec.ingest.synthetic``), runs the real ``nightly`` flow on it
with the default config (an ephemeral Prefect server under a temporary PREFECT_HOME), then a
second, warm-started night on the next day's log. For each night it prints every stage's wall
time (from the Prefect task runs), its share of the night and the peak RSS of this process and
its trainer while the stage ran, plus training's epochs and what stopped it. Ratios against
references measured in the same run: sequences against one Polars scan + sort of the log,
scoring against ``torch.mm`` of the same shape (users x d times d x items, in the same chunks).
``--data amazon`` runs the same nights on the real Amazon Sports sequences instead, each user's
items ten minutes apart inside the week before the run date (the second night a day later);
``--holdout`` then takes each user's last item out of the first night's log and ranks it in the
published table, beside the masked last-item kNN fitted on the night's training sequences and on
every kept event (the end-to-end check of a published table).

Then intra-day refreshes of the last night (``flows.refresh``): one with nothing new, then 1%,
5% and 25% of the log's users active in one hour, five views each, dropped as a new file in the
log's folder, printed with the seconds of each refresh stage and the ratio of the last to the
first (the work should follow the active users). ``--nights 0 --workdir DIR`` runs only the refreshes on a workdir an earlier run left.

``--executor dask --workers 2`` runs the first night again on a temporary local Dask cluster of
that many worker processes (``orchestration.shards``: ``--shards``, default twice the workers) and
prints both nights' stages side by side: on one machine that is the engine's overhead, not a
speed-up.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as flows/__init__.py
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"3m": (100_000, 50_000), "30m": (1_000_000, 500_000)}
REFRESH_SHARES = (0.01, 0.05, 0.25)
REFRESH_VIEWS = 5
STAGES = ("ingest", "validate", "behavior", "sequences", "train", "evaluate", "score", "fallback", "publish")


def tree_rss_mb(root: int, skip: str = "prefect.server") -> float:
    """RSS of ``root`` and its descendants (not the ephemeral Prefect server), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            if skip in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " "):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        stack.extend(children.get(pid, []))
    return total / 1024


class RssSampler(threading.Thread):
    """Samples this process tree's RSS every ``every`` seconds: ``[(monotonic, wall, MB)]``."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.samples, self.stopped = every, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.time(), tree_rss_mb(os.getpid())))
            self.stopped.wait(self.every)

    def peak(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.samples if start - self.every <= t <= end + self.every]
        return max(inside, default=0.0)


# The sharded path's tasks (flows.shards), counted in the stage they belong to.
STAGE_OF = {
    "ingest-shards": "ingest",
    "validate-shard": "validate",
    "sequences-shard": "sequences",
    "sequences-vocab": "sequences",
    "score-shard": "score",
    "popularity": "fallback",
    "fallback-shard": "fallback",
}


def task_runs(flow_run_id) -> dict[str, tuple[float, float]]:
    """Stage name -> (start, end) as UNIX times, from the first of a stage's task runs to the
    last (a sharded stage's shard tasks and reduce included)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, tuple[float, float]] = {}
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        name = run.name.rsplit("-", 1)[0]
        name = STAGE_OF.get(name, name)
        start, end = run.start_time.timestamp(), run.end_time.timestamp()
        if name in out:
            start, end = min(start, out[name][0]), max(end, out[name][1])
        out[name] = (start, end)
    return out


def polars_reference(events_dir: Path) -> float:
    """Seconds for one Polars scan + sort of the log by user and time (what sequences must beat)."""
    import polars as pl

    started = time.perf_counter()
    pl.scan_parquet(events_dir / "*.parquet").sort("user_id", "timestamp").collect()
    return time.perf_counter() - started


def mm_reference(
    users: int, items: int, device: str = "cpu", dim: int = 64, chunk: int = 4096, max_chunks: int = 25
) -> float:
    """Seconds of ``torch.mm`` over users x items in the scoring kernel's chunks, no top-k, on the
    device the night scored on (``lightning_modules.scoring.scoring_device``).

    Every chunk is the same product, so at most ``max_chunks`` are timed and the time is scaled
    to all of them (at 1M users x 500k items the whole product alone takes a quarter of an hour).
    """
    import torch

    states, table = torch.randn(min(users, chunk), dim, device=device), torch.randn(dim, items, device=device)
    out = torch.empty(min(users, chunk), items, device=device)
    chunks = -(-users // chunk)
    timed = min(chunks, max_chunks)
    torch.mm(states, table, out=out)  # warm-up: a GPU's first product pays for its kernels
    if device != "cpu":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(timed):
        torch.mm(states, table, out=out)
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) * chunks / timed


def amazon_events(out: Path, end: date) -> dict:
    """Amazon Sports as one Parquet file of events in the 7 days up to ``end``: each user's items
    in order, ten minutes apart, the user's last item at a fixed hash offset of up to 4 days before
    the end of the window."""
    import polars as pl

    from benchmarks.bench_amazon import DATA
    from nightrec.ingest.readers import read_events
    from nightrec.schema import TIMESTAMP, USER_ID

    events = read_events(DATA, "sequences")
    window_end = datetime.combine(end, datetime.max.time(), tzinfo=UTC).replace(microsecond=0)
    steps_back = pl.len().over(USER_ID) - pl.int_range(pl.len()).over(USER_ID)  # last item: 1
    offset = (pl.col(USER_ID).hash(7) % (4 * 24 * 60)).cast(pl.Int64)  # minutes
    events = events.with_columns((pl.lit(window_end) - pl.duration(minutes=steps_back * 10 + offset)).alias(TIMESTAMP))
    out.mkdir(parents=True, exist_ok=True)
    events.write_parquet(out / "events.parquet")
    return {"rows": events.height, "users": events[USER_ID].n_unique(), "items": events["item_id"].n_unique()}


def hold_out_events(events_dir: Path):
    """Take each user's last event out of ``events_dir/events.parquet``: ``(kept, held out)``."""
    import polars as pl

    from nightrec.evaluation.holdout import hold_out_last

    kept, held = hold_out_last(pl.read_parquet(events_dir / "events.parquet"))
    kept.write_parquet(events_dir / "events.parquet")
    return kept, held


def holdout_report(config, run_date: date, kept, held, k: int = 10) -> dict:
    """NDCG@k of the held-out items in the published table, beside the masked last-item kNN
    fitted on the night's training sequences and on every kept event."""
    import duckdb

    from lightning_modules.baselines import last_item_knn_lists
    from lightning_modules.data import SequenceDataModule
    from lightning_modules.refit import refit_frame
    from nightrec.evaluation.holdout import published_metrics
    from nightrec.layout import run_dir

    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        published = con.sql("SELECT * FROM recommendations_latest").pl()
    data = SequenceDataModule(run_dir(config.data_dir, run_date) / "sequences", max_len=config.sequences.max_len)
    data.load()
    users = held.get_column("user_id").to_list()
    every = refit_frame(data).get_column("items")
    fits = {
        "last-item kNN, training sequences": data.train_lists[:2],
        "last-item kNN, every kept event": (every.explode().to_numpy(), every.list.len().to_numpy()),
    }
    out = {"published table": published_metrics(published, held, k)}
    for name, (flat, lengths) in fits.items():
        out[name] = published_metrics(last_item_knn_lists(data.items, flat, lengths, kept, users, k), held, k)
    print(f"\nheld-out last items ({held.height:,} users), NDCG@{k} / Recall@{k}:")
    for name, m in out.items():
        ratio = (
            ""
            if name == "published table"
            else f"  published is {out['published table'][f'ndcg@{k}'] / m[f'ndcg@{k}']:.2f}x"
        )
        print(f"  {name:<36} {m[f'ndcg@{k}']:.4f} / {m[f'recall@{k}']:.4f}{ratio}", flush=True)
    return out


def score_shape(data_dir: Path, run_date: date) -> tuple[int, int]:
    """``(users scored, catalogue items)`` of a night: the shape its scoring stage ranked."""
    import polars as pl

    from nightrec.layout import FULL_FILE, ITEMS_FILE, run_dir

    sequences = run_dir(Path(data_dir), run_date) / "sequences"
    users = pl.scan_parquet(sequences / FULL_FILE).select(pl.len()).collect().item()
    return users, pl.scan_parquet(sequences / ITEMS_FILE).select(pl.len()).collect().item()


def run_one_night(config, run_date: date, sampler: RssSampler) -> dict:
    from flows.nightly import nightly

    started = time.time()
    state = nightly(run_date=run_date, config=config, return_state=True)
    ended = time.time()
    if not state.is_completed():
        raise SystemExit(f"night {run_date} ended {state.name}: {state.message}")
    summary = state.result()
    stages = task_runs(state.state_details.flow_run_id)
    candidate = (summary.get("metrics") or {}).get("candidate") or {}
    return {
        "run_date": run_date.isoformat(),
        "wall_s": ended - started,
        "peak_rss_mb": sampler.peak(started, ended),
        "stages": {
            name: {"s": end - start, "peak_rss_mb": sampler.peak(start, end)} for name, (start, end) in stages.items()
        },
        "epochs": candidate.get("epochs"),
        "best_epoch": candidate.get("best_epoch"),
        "stopped_by": candidate.get("stopped_by"),
        "objective": (candidate.get("objective") or {}).get("loss"),
        "seconds_per_epoch": candidate.get("seconds_per_epoch"),
        "valid_ndcg10": (candidate.get("valid") or {}).get("ndcg@10"),
        "warm_start": bool(candidate.get("warm_start")),
        "family": candidate.get("family") or config.model.family,
        "refit": candidate.get("refit"),
        "users": summary["recommendations"]["users"],
        "rows": summary["recommendations"]["rows"],
    }


def refresh_drop(events_dir: Path, run_date: date, share: float, hour: int, seed: int) -> int:
    """``share`` of the log's users view ``REFRESH_VIEWS`` items each (drawn by the log's item
    popularity) in hour ``hour`` of ``run_date``, written as one more file of the log; returns the rows."""
    import numpy as np
    import polars as pl

    from nightrec.schema import EVENT_SCHEMA

    log = pl.scan_parquet(events_dir / "*.parquet")
    users = log.select("user_id").unique().sort("user_id").collect().get_column("user_id")
    active = users.sample(max(1, int(users.len() * share)), seed=seed)
    items = log.select("item_id").collect().get_column("item_id").sample(active.len() * REFRESH_VIEWS, seed=seed)
    rng = np.random.default_rng(seed)
    start = datetime.combine(run_date, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)
    minutes = np.sort(rng.integers(0, 59 * 60, (active.len(), REFRESH_VIEWS)), axis=1).reshape(-1)
    drop = pl.DataFrame(
        {
            "user_id": active.to_numpy().repeat(REFRESH_VIEWS),
            "item_id": items,
            "event_type": "view",
            "timestamp": [start + timedelta(seconds=int(s)) for s in minutes],
        }
    ).with_columns(pl.col("timestamp").cast(EVENT_SCHEMA["timestamp"]))
    drop.write_parquet(events_dir / f"refresh-{run_date.isoformat()}-{hour:02d}.parquet")
    return drop.height


def run_refreshes(config, run_date: date, sampler: RssSampler) -> list[dict]:
    """A refresh with nothing new (the fixed cost), then one per ``REFRESH_SHARES``, each on its
    own hour after the night's watermark."""
    from nightrec.refresh.state import night_end, read_state

    watermark = read_state(config.data_dir, run_date).watermark
    first_hour = max(0, int((watermark - night_end(run_date)).total_seconds() // 3600) + 1)
    out = [one_refresh(config, sampler, 0.0, 0)]
    for hour, share in enumerate(REFRESH_SHARES, start=first_hour):
        rows = refresh_drop(Path(config.events), run_date, share, hour, seed=hour)
        out.append(one_refresh(config, sampler, share, rows))
    first, last = out[1], out[-1]
    print(
        f"refresh {last['share']:.0%} vs {first['share']:.0%}: {last['users'] / first['users']:.1f}x the users "
        f"in {last['wall_s'] / first['wall_s']:.2f}x the time ({last['seconds']['total'] / first['seconds']['total']:.2f}x "
        f"inside the flow); with nothing new a refresh spends {out[0]['seconds']['total']:.1f} s inside the flow "
        "(its wall time includes starting Prefect's temporary server when no night ran before it)"
    )
    return out


def one_refresh(config, sampler: RssSampler, share: float, rows: int) -> dict:
    from flows.refresh import refresh

    started = time.time()
    state = refresh(config=config, return_state=True)
    ended = time.time()
    if not state.is_completed():
        raise SystemExit(f"refresh ended {state.name}: {state.message}")
    summary = state.result()
    run = {
        "share": share,
        "events": rows,
        "users": summary["users_refreshed"],
        "wall_s": ended - started,
        "peak_rss_mb": sampler.peak(started, ended),
        "seconds": summary["seconds"],
    }
    print_refresh(run)
    return run


def print_refresh(run: dict) -> None:
    stages = ", ".join(f"{name} {s:.1f}" for name, s in run["seconds"].items() if name != "total")
    what = "refresh with no new events"
    if run["share"]:
        what = f"refresh ({run['share']:.0%} of users active in one hour): {run['users']:,} users, {run['events']:,} events,"
    print(
        f"{what} {run['wall_s']:.1f} s end to end (stages: {stages}), peak RSS {run['peak_rss_mb']:.0f} MB", flush=True
    )


def print_night(label: str, night: dict, refs: dict) -> None:
    print(f"\n{label}: {night['run_date']}, {night['wall_s']:.0f} s end to end, peak RSS {night['peak_rss_mb']:.0f} MB")
    print(f"{'stage':<17}{'seconds':>9}{'share':>8}{'peak MB':>9}  reference")
    for name, stage in sorted(night["stages"].items(), key=lambda kv: -kv[1]["s"]):
        ref = ""
        if name == "sequences":
            ref = f"{stage['s'] / refs['polars_sort_s']:.1f}x one Polars scan+sort ({refs['polars_sort_s']:.1f} s)"
        elif name == "score":
            u, n = refs["score_shape"]
            ref = f"{stage['s'] / refs['mm_s']:.1f}x torch.mm of {u:,} x {n:,} x 64 on {refs['device']} ({refs['mm_s']:.1f} s)"
        share = stage["s"] / night["wall_s"]
        print(f"{name:<17}{stage['s']:>9.1f}{share:>8.1%}{stage['peak_rss_mb']:>9.0f}  {ref}")
    other = night["wall_s"] - sum(stage["s"] for stage in night["stages"].values())
    print(f"{'other':<17}{other:>9.1f}{other / night['wall_s']:>8.1%}{'':>9}  flow start, report, artifacts, Prefect")
    print(
        f"training: {night['epochs']} epochs ({night['objective']}, {night['seconds_per_epoch'] or 0:.1f} s each), "
        f"best epoch {night['best_epoch']}, stopped by {night['stopped_by']}, warm start {night['warm_start']}, "
        f"valid NDCG@10 {night['valid_ndcg10'] or 0:.4f}; {night['rows']:,} rows for {night['users']:,} users"
    )
    refit = night.get("refit") or {}
    if refit.get("status") == "refit":
        print(
            f"served {night['family']} refitted: {refit['how']}, {refit['transitions_added']:,} held-out transitions, "
            f"{refit['seconds']:.1f} s{' (cut by the budget)' if refit.get('stopped_by') == 'time_budget' else ''}"
        )
    elif refit:
        print(f"served {night['family']} as validated: {refit.get('reason')}")


def print_comparison(local: dict, dask: dict, orchestration: dict) -> None:
    """The same night on both executors, stage by stage: the engine's overhead on this machine."""
    print(
        f"\nthe same night on a temporary local Dask cluster ({orchestration['dask_workers']} worker processes, "
        f"{orchestration['shards']} user shards) beside the local executor"
    )
    print(f"{'stage':<17}{'local s':>9}{'dask s':>9}{'ratio':>8}")
    names = sorted(set(local["stages"]) | set(dask["stages"]), key=lambda n: -local["stages"].get(n, {"s": 0})["s"])
    sharded = ("validate", "sequences", "score", "fallback")
    totals = [0.0, 0.0]
    for name in names:
        a, b = (night["stages"].get(name, {"s": 0.0})["s"] for night in (local, dask))
        if name in sharded:
            totals = [totals[0] + a, totals[1] + b]
        print(f"{name:<17}{a:>9.1f}{b:>9.1f}{(b / a if a else float('nan')):>7.2f}x")
    print(f"{'sharded stages':<17}{totals[0]:>9.1f}{totals[1]:>9.1f}{totals[1] / totals[0]:>7.2f}x")
    wall = (local["wall_s"], dask["wall_s"])
    print(
        f"{'end to end':<17}{wall[0]:>9.1f}{wall[1]:>9.1f}{wall[1] / wall[0]:>7.2f}x  "
        f"(overhead {wall[1] / wall[0] - 1:+.1%}; peak RSS {local['peak_rss_mb']:.0f} / {dask['peak_rss_mb']:.0f} MB, "
        "this process tree, the Dask workers included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "amazon"), default="synthetic")
    parser.add_argument("--size", choices=sorted(SIZES), default="3m")
    parser.add_argument("--users", type=int, default=None, help="override the size's users")
    parser.add_argument("--items", type=int, default=None, help="override the size's items")
    parser.add_argument("--nights", type=int, default=2, choices=(0, 1, 2), help="0: only the refreshes (--workdir)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="config overrides")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="amazon, first night: hold out each user's last item and rank it in the published table",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="dask: after the first night, the same night again on a temporary local Dask cluster, side by side",
    )
    parser.add_argument("--workers", type=int, default=2, help="--executor dask: worker processes")
    parser.add_argument("--shards", type=int, default=None, help="--executor dask: user shards (default 2 x workers)")
    args = parser.parse_args()
    if args.executor == "dask":
        args.nights = 1
    if args.holdout and args.data != "amazon":
        raise SystemExit("--holdout: only with --data amazon")
    users, items = SIZES[args.size]
    users, items = args.users or users, args.items or items
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"bench-nightly-{args.data}-{args.size}-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))

    from lightning_modules.scoring import scoring_device
    from nightrec.config import load_config
    from nightrec.ingest.synthetic import SyntheticSpec, write_demo_data

    end = datetime.now(UTC).date() - timedelta(days=2)
    sampler = RssSampler()
    sampler.start()
    overrides: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        overrides.setdefault(section, {})[name] = json.loads(value) if value[:1] in "[{0123456789.-tfn" else value
    nights, refs = [], {}
    for night in range(args.nights):
        events = workdir / f"events-night{night + 1}"
        started = time.perf_counter()
        night_end = end + timedelta(days=night)
        if args.data == "amazon":
            manifest = amazon_events(events, night_end)
            users, items = manifest["users"], manifest["items"]
            if args.holdout and night == 0:
                kept, held = hold_out_events(events)
                manifest["rows"] = kept.height
        else:
            spec = SyntheticSpec(users=users, items=items, days=7, seed=11, end_date=night_end)
            manifest = write_demo_data(events, spec)
        print(
            f"night {night + 1} log ({args.data}): {manifest['rows']:,} events, {users:,} users, {items:,} items "
            f"(made in {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        refs = {"polars_sort_s": polars_reference(events)}
        config = load_config(overrides={**overrides, "data_dir": str(workdir / "data"), "events": str(events)})
        nights.append(run_one_night(config, night_end + timedelta(days=1), sampler))
        refs["score_shape"] = score_shape(config.data_dir, night_end + timedelta(days=1))
        refs["device"] = scoring_device(config.train.accelerator)
        refs["mm_s"] = mm_reference(*refs["score_shape"], device=refs["device"])
        print_night(f"night {night + 1} ({'first' if night == 0 else 'warm-started'})", nights[-1], refs)
        if args.holdout and night == 0:
            nights[-1]["holdout"] = holdout_report(config, night_end + timedelta(days=1), kept, held)
        if args.executor == "dask":
            orchestration = {
                "executor": "dask",
                "dask_workers": args.workers,
                "shards": args.shards or 2 * args.workers,
            }
            sharded = {**overrides, "orchestration": {**overrides.get("orchestration", {}), **orchestration}}
            config = load_config(overrides={**sharded, "data_dir": str(workdir / "data-dask"), "events": str(events)})
            nights.append(run_one_night(config, night_end + timedelta(days=1), sampler))
            print_comparison(nights[0], nights[-1], orchestration)
            break
    refreshes = []
    if args.data == "synthetic" and args.executor == "local":
        last = max(workdir.glob("events-night*"), default=None)
        if last is None:
            raise SystemExit(f"{workdir}: no events-night* folder to refresh from")
        config = load_config(overrides={**overrides, "data_dir": str(workdir / "data"), "events": str(last)})
        from nightrec.publish.local import published_dates

        refreshes = run_refreshes(config, published_dates(config.data_dir)[-1], sampler)
    sampler.stopped.set()
    results = {"refs": refs, "nights": nights, "refreshes": refreshes}
    (workdir / "bench_nightly.json").write_text(json.dumps(results, indent=2))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; results {workdir}")


if __name__ == "__main__":
    main()
