"""Amazon Sports (sparse, short histories, 18k items): cost and quality of each training objective.

    nice -n 10 python benchmarks/bench_amazon.py [--losses auto ce sampled_softmax] [--seeds 1] [--epochs N]

The S3Rec protocol of the published numbers: leave-one-out per user, full ranking over every
item, @10. Each run is the real training entry point (``python -m lightning_modules.train``) in
its own subprocess with the default config except the objective, the seed and what the flags
set; the table prints its measured seconds per epoch, epochs, test metrics and peak RSS, and the
ratio of each objective's cost and NDCG@10 to full cross-entropy measured in the same run.
"""

import os

# OpenMP threads wait passively, as in flows/__init__.py: spinning collapses on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ml100k import train_run  # noqa: E402
from nightrec.config import NightrecConfig  # noqa: E402
from nightrec.ingest.readers import read_events  # noqa: E402
from nightrec.sequences.build import build_sequences, write_sequences  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "amazon-sports.txt"
PUBLISHED = {"SASRec (sampled softmax)": 0.0314, "eSASRec": 0.0323}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--losses", nargs="+", default=["auto", "ce", "sampled_softmax"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the config's)")
    parser.add_argument("--max-minutes", type=float, default=None, help="train.max_minutes (default: no budget)")
    parser.add_argument("--threads", type=int, default=2, help="train.num_threads of each run")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="more overrides")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-amazon-"))
    base = NightrecConfig()
    seq_config = base.sequences.model_copy(update={"split": "leave_last_out", "collapse_repeats": False})
    seqs = build_sequences(read_events(args.data, "sequences"), seq_config)
    seq_dir = write_sequences(seqs, workdir / "sequences")
    print(f"amazon-sports: {seqs.users.height} users, {seqs.items.height} items, {seqs.stats['events_in']} events")

    results: dict[str, list[dict]] = {}
    for loss in args.losses:
        for seed in range(args.seeds):
            config = base.model_copy(deep=True)
            config.model.loss, config.train.seed, config.train.num_threads = loss, seed, args.threads
            # the published protocol: every user ranked, training not cut by a nightly time budget
            config.train.eval_users, config.train.max_minutes = None, args.max_minutes
            if args.epochs:
                config.train.epochs = args.epochs
            for item in args.set:
                key, value = item.split("=", 1)
                section, name = key.split(".")
                setattr(getattr(config, section), name, type(getattr(getattr(config, section), name))(value))
            run = train_run(config, seq_dir, workdir / f"{loss}-seed{seed}")
            t = run["test"]
            print(
                f"{loss} seed {seed}: objective {run['objective']['loss']}, test ndcg@10 {t['ndcg@10']:.4f} "
                f"recall@10 {t['recall@10']:.4f}, {run['epochs']} epochs at {run['seconds_per_epoch']:.1f} s "
                f"(first {run['history'][0]['epoch_s']:.1f} s), best epoch {run['best_epoch']}, "
                f"peak RSS {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            results.setdefault(loss, []).append(run)

    print(f"\n{'loss':<18}{'objective':>16}{'ndcg@10':>9}{'recall@10':>10}{'s/epoch':>9}{'epochs':>8}{'fit s':>8}")
    means = {}
    for loss, runs in results.items():
        m = {
            "ndcg": statistics.fmean(r["test"]["ndcg@10"] for r in runs),
            "recall": statistics.fmean(r["test"]["recall@10"] for r in runs),
            "epoch_s": statistics.fmean(r["seconds_per_epoch"] for r in runs),
            "epochs": statistics.fmean(r["epochs"] for r in runs),
            "fit_s": statistics.fmean(r["fit_seconds"] for r in runs),
        }
        means[loss] = m
        objective = runs[0]["objective"]["loss"]
        print(
            f"{loss:<18}{objective:>16}{m['ndcg']:>9.4f}{m['recall']:>10.4f}{m['epoch_s']:>9.1f}"
            f"{m['epochs']:>8.0f}{m['fit_s']:>8.0f}"
        )
    if "ce" in means:
        ref = means["ce"]
        for loss, m in means.items():
            if loss != "ce":
                print(
                    f"{loss} vs ce: NDCG@10 {m['ndcg'] / ref['ndcg']:.3f}x, seconds per epoch "
                    f"{m['epoch_s'] / ref['epoch_s']:.3f}x, fit time {m['fit_s'] / ref['fit_s']:.3f}x"
                )
    for name, ndcg in PUBLISHED.items():
        print(f"published {name}: NDCG@10 {ndcg}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; workdir {workdir}")


if __name__ == "__main__":
    main()
