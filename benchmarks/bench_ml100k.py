"""MovieLens-100k quality and cost: nightrec's RNN, LSTM and GRU against popularity and item-kNN.

    make bench-data && nice -n 10 python benchmarks/bench_ml100k.py [--seeds 3] [--cells rnn lstm gru]

RecBole's protocol: leave-last-out, full ranking over every item, max_len 50; each metric is
printed unmasked (RecBole) and with seen items masked. Every model run is the real training entry
point (``python -m lightning_modules.train``) in its own subprocess with the default config except
the cell and the seed, so its epochs, seconds per epoch, time to the best checkpoint and peak RSS
are its own. Baselines are scored by the same harness. Numbers are measured, never asserted.
``--ablate lstm`` adds runs of that cell without the learned history offset (``model.history_bias``).
"""

import os

# OpenMP threads wait passively, as in flows/__init__.py: spinning collapses on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_modules.baselines import ItemKNNRecommender, PopularityRecommender  # noqa: E402
from lightning_modules.data import SequenceDataModule  # noqa: E402
from nightrec.config import NightrecConfig  # noqa: E402
from nightrec.ingest.readers import read_events  # noqa: E402
from nightrec.layout import METRICS_FILE  # noqa: E402
from nightrec.sequences.build import build_sequences, write_sequences  # noqa: E402

RECBOLE_GRU4REC = {"ndcg@10": 0.0702, "recall@10": 0.141, "mrr@10": 0.0492}
BAR_NDCG10 = 0.077
COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20")


def train_run(config: NightrecConfig, sequences: Path, out: Path) -> dict:
    """One entry-point run in a subprocess; its metrics.json plus wall time and peak RSS."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "run-config.json").write_text(config.model_dump_json())
    cmd = [sys.executable, "-m", "lightning_modules.train", "--config", str(out / "run-config.json")]
    cmd += ["--sequences", str(sequences), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    with open(out / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed, see {out / 'train.log'}")
    metrics = json.loads((out / METRICS_FILE).read_text())
    metrics["wall_s"] = time.perf_counter() - started
    metrics["peak_rss_mb"] = usage.ru_maxrss / 1024
    return metrics


def row(name: str, test: dict, extra: dict | None = None) -> dict:
    return {"name": name, "test": test, **(extra or {})}


def fmt_row(r: dict) -> str:
    t = r["test"]
    cells = [f"{t[c]:.4f}" for c in COLUMNS] + [f"{t['masked/' + c]:.4f}" for c in COLUMNS]
    cost = [
        f"{r['epochs']:.0f}" if "epochs" in r else "-",
        f"{r['seconds_per_epoch']:.1f}" if "seconds_per_epoch" in r else "-",
        f"{r['seconds_to_best']:.0f}" if "seconds_to_best" in r else "-",
        f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-",
    ]
    return f"{r['name']:<26}" + " ".join(f"{c:>7}" for c in cells + cost)


def mean_metrics(runs: list[dict]) -> dict:
    return {key: statistics.fmean(r["test"][key] for r in runs) for key in runs[0]["test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data" / "ml-100k" / "ml-100k.inter")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument(
        "--threads", type=int, default=1, help="train.num_threads of each run (1 beats 2 on a busy 2-core box)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once (timings then share the CPU)")
    parser.add_argument(
        "--ablate", nargs="*", default=[], help="cells also run with model.history_bias=false (the ablation)"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="train.max_minutes of each run; default none: quality is measured to early stopping, "
        "not cut by the nightly's time budget (which a loaded machine reaches sooner)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep sequences and models here")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: not found; run `make bench-data` first")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ml100k-"))
    base = NightrecConfig()
    seqs = build_sequences(read_events(args.data), base.sequences.model_copy(update={"split": "leave_last_out"}))
    seq_dir = write_sequences(seqs, workdir / "sequences")
    print(f"ml-100k: {seqs.users.height} users, {seqs.items.height} items; max_len {base.sequences.max_len}")
    print(f"model defaults: {base.model.model_dump_json()}\ntrain defaults: {base.train.model_dump_json()}\n")

    data = SequenceDataModule(seq_dir, max_len=base.sequences.max_len)
    data.load()
    flat, lengths, _ = data.train_lists
    knn = ItemKNNRecommender(data.items, flat, lengths)
    windows = {w: ItemKNNRecommender(data.items, flat, lengths, window=w) for w in (1, 2, 3, 5)}
    best_w = max(windows, key=lambda w: windows[w].evaluate(data.eval_rows["valid"])["ndcg@10"])
    rows = [
        row("popularity", PopularityRecommender(data.items, flat).evaluate(data.eval_rows["test"])),
        row("item-knn (last item)", knn.evaluate(data.eval_rows["test"])),
        row(f"item-knn (window {best_w}*)", windows[best_w].evaluate(data.eval_rows["test"])),
    ]
    per_cell: dict[str, list[dict]] = {}
    jobs = [(cell, seed, base.model.history_bias) for cell in args.cells for seed in range(args.seeds)]
    jobs += [(cell, seed, False) for cell in args.ablate for seed in range(args.seeds)]

    def label(cell: str, history_bias: bool) -> str:
        return cell if history_bias == base.model.history_bias else f"{cell} no-offset"

    def one(job: tuple[str, int, bool]) -> dict:
        cell, seed, history_bias = job
        config = base.model_copy(deep=True)
        config.model.family, config.train.seed, config.train.num_threads = cell, seed, args.threads
        config.model.history_bias = history_bias
        config.train.max_minutes = args.max_minutes
        run = train_run(config, seq_dir, workdir / f"{label(cell, history_bias).replace(' ', '-')}-seed{seed}")
        t = run["test"]
        offset = run.get("history_weight")
        print(
            f"{label(cell, history_bias)} seed {seed}: test ndcg@10 {t['ndcg@10']:.4f} "
            f"(masked {t['masked/ndcg@10']:.4f}), valid {run['valid']['ndcg@10']:.4f}, "
            f"best epoch {run['best_epoch']} of {run['epochs']}, {run['seconds_to_best']:.0f}s to best"
            + (f", learned history offset {offset:+.2f}" if offset is not None else ""),
            flush=True,
        )
        return run

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for (cell, seed, history_bias), run in zip(jobs, pool.map(one, jobs), strict=True):
            name = label(cell, history_bias)
            per_cell.setdefault(name, []).append(run)
            rows.append(row(f"{name} seed {seed}", run["test"], run))
    for cell, runs in per_cell.items():
        cost = {k: statistics.fmean(r[k] for r in runs) for k in ("epochs", "seconds_per_epoch", "seconds_to_best")}
        cost["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        rows.append(row(f"{cell} mean of {len(runs)}", mean_metrics(runs), cost))

    header = [f"{c}" for c in COLUMNS] + [f"m:{c}" for c in COLUMNS] + ["epochs", "s/ep", "s→best", "RSS MB"]
    print("\ntest split, full ranking; m: = seen items masked; * window chosen on validation")
    print(f"{'':<26}" + " ".join(f"{h:>7}" for h in header))
    for r in rows:
        print(fmt_row(r))

    print()
    knn_t = rows[1]["test"]
    for cell, runs in per_cell.items():
        ndcg = [r["test"]["ndcg@10"] for r in runs]
        masked = [r["test"]["masked/ndcg@10"] for r in runs]
        valid = statistics.fmean(r["valid"]["ndcg@10"] for r in runs)
        mean, spread = statistics.fmean(ndcg), (max(ndcg) - min(ndcg))
        std = statistics.stdev(ndcg) if len(ndcg) > 1 else 0.0
        print(
            f"{cell}: test NDCG@10 {mean:.4f} ± {std:.4f} (range {spread:.4f}) over {len(runs)} seeds "
            f"(valid {valid:.4f}); "
            f"{mean / RECBOLE_GRU4REC['ndcg@10']:.2f}x RecBole GRU4Rec (0.0702); "
            f"{mean / knn_t['ndcg@10']:.2f}x item-kNN unmasked, "
            f"{statistics.fmean(masked) / knn_t['masked/ndcg@10']:.2f}x masked; bar {BAR_NDCG10}: "
            f"{'met' if mean >= BAR_NDCG10 else 'NOT met'}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings include that sharing)")
    print(
        f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; workdir {workdir}"
    )


if __name__ == "__main__":
    main()
