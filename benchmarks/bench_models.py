"""Every model family on MovieLens-100k and Amazon Sports, next to popularity and last-item kNN.

    make bench-data && nice -n 10 python benchmarks/bench_models.py [--datasets ml-100k amazon]
        [--families rnn lstm gru lru sasrec item_cf user_cf ease] [--seeds 3] [--first-seed 0] [--set SECTION.KEY=VALUE ...]

Leave-one-out per user, full ranking over every item, every user evaluated; each metric unmasked
and with seen items masked (m:), then the cold-start slices (cu: NDCG@10 of users with one or
two training events, ci: Recall@20 of targets whose item is in no training sequence; "-" when
the data set has none). Each run is the real training entry point in its own subprocess with
the default config except the family, the seed and ``--set``, trained to early stopping
(no nightly time budget unless ``--max-minutes``), the best epoch chosen on validation only. The
closed-form families (item_cf, user_cf, ease) are deterministic: one run stands for every seed.
Rows per run, then per family the mean and the standard deviation over seeds, epochs, seconds to
the best checkpoint and peak RSS. Numbers are measured, never asserted.

``--refit`` adds rows for a second protocol: after the choice on validation, the closed-form
families and last-item kNN are fitted again on every event before the test item (the training
sequences plus the validation targets) and tested; the nightly serves from all the events it has,
so these rows show what the most recent transitions are worth. They never enter the "best" lines.
"""

import os

# OpenMP threads wait passively, as in flows/__init__.py: spinning collapses on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ml100k import train_run  # noqa: E402
from lightning_modules.baselines import ItemKNNRecommender, PopularityRecommender  # noqa: E402
from lightning_modules.data import SequenceDataModule  # noqa: E402
from lightning_modules.families import build_network  # noqa: E402
from lightning_modules.recommend import ModelRecommender  # noqa: E402
from nightrec.config import FAMILIES, NightrecConfig  # noqa: E402
from nightrec.ingest.readers import read_events  # noqa: E402
from nightrec.layout import TRAIN_FILE, VALID_FILE  # noqa: E402
from nightrec.schema import USER_IDX  # noqa: E402
from nightrec.sequences.build import build_sequences, write_sequences  # noqa: E402

DATASETS = {
    "ml-100k": (ROOT / "bench-data" / "ml-100k" / "ml-100k.inter", None, True),
    "amazon": (ROOT.parent / "shared" / "datasets" / "amazon-sports.txt", "sequences", False),
}
CLOSED_FORM = {"item_cf", "user_cf", "ease"}
RECURRENT = {"rnn", "lstm", "gru", "lru"}
COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10")
# The cold-start slices (unmasked) and the key of each one's size; "-" when the slice is empty.
COLD = {
    "cu:n@10": ("cold_users/ndcg@10", "cold_users/users"),
    "ci:r@20": ("cold_items/recall@20", "cold_items/targets"),
}
# Published full-ranking NDCG@10 on the same preprocessing (the targets).
TARGETS = {"amazon": {"best": 0.033, "recurrent": 0.0314}, "ml-100k": {"best": 0.1151}}


def override(config: NightrecConfig, items: list[str]) -> None:
    for item in items:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        current = getattr(getattr(config, section), name)
        setattr(getattr(config, section), name, type(current)(value) if current is not None else value)


def sequences_for(name: str, workdir: Path) -> tuple[Path, NightrecConfig]:
    path, fmt, collapse = DATASETS[name]
    if not path.is_file():
        raise SystemExit(f"{path}: not found (ml-100k: run `make bench-data` first)")
    base = NightrecConfig()
    seq_config = base.sequences.model_copy(update={"split": "leave_last_out", "collapse_repeats": collapse})
    events = read_events(path, fmt) if fmt else read_events(path)
    seqs = build_sequences(events, seq_config)
    print(f"\n## {name}: {seqs.users.height} users, {seqs.items.height} items, {seqs.stats['events_in']} events")
    return write_sequences(seqs, workdir / name / "sequences"), base


def through_validation_frame(data: SequenceDataModule) -> pl.DataFrame:
    """``user_idx, items``: each user's whole training sequence followed by their validation target."""
    train = data._read(TRAIN_FILE).select(USER_IDX, "items")
    valid = data._read(VALID_FILE).select(USER_IDX, "target")
    items = pl.when(pl.col("target").is_null()).then(pl.col("items")).otherwise(pl.concat_list("items", "target"))
    return train.join(valid, on=USER_IDX, how="left").select(USER_IDX, items.alias("items"))


def through_validation(data: SequenceDataModule) -> tuple:
    """``(flat items, lengths)`` of ``through_validation_frame``."""
    sequences = through_validation_frame(data).get_column("items")
    return sequences.explode().drop_nulls().to_numpy(), sequences.list.len().to_numpy()


def baselines(seq_dir: Path, max_len: int, refit: bool = False) -> list[dict]:
    data = SequenceDataModule(seq_dir, max_len=max_len)
    data.load()
    flat, lengths, _ = data.train_lists
    test = data.eval_rows["test"]
    rows = [
        {"name": "popularity", "test": PopularityRecommender(data.items, flat).evaluate(test)},
        {"name": "last-item knn", "test": ItemKNNRecommender(data.items, flat, lengths).evaluate(test)},
    ]
    if refit:
        knn = ItemKNNRecommender(data.items, *through_validation(data))
        rows.append({"name": "last-item knn (refit)", "test": knn.evaluate(test)})
    return rows


def refit_test(config: NightrecConfig, seq_dir: Path) -> dict:
    """A closed-form family fitted on every event before the test item, then tested."""
    data = SequenceDataModule(seq_dir, max_len=config.sequences.max_len)
    data.load()
    network = build_network(config.model, data.n_items, config.sequences.max_len)
    network.fit(*through_validation(data))
    test = ModelRecommender(network, data.items, config.sequences.max_len).evaluate(data.eval_rows["test"])
    return {"test": test, "std": dict.fromkeys(test, 0.0), "cost": {}, "runs": 1}


def fmt(name: str, test: dict, spread: dict | None = None, cost: dict | None = None) -> str:
    cells = []
    for prefix in ("", "masked/"):
        for c in COLUMNS:
            value = f"{test[prefix + c]:.4f}"
            if spread is not None and c == "ndcg@10":
                value += f"±{spread[prefix + c]:.4f}"
            cells.append(f"{value:>{15 if c == 'ndcg@10' else 7}}")
    cells += [f"{f'{test[key]:.4f}' if test.get(size) else '-':>7}" for key, size in COLD.values()]
    cost = cost or {}
    tail = [
        f"{cost['epochs']:.0f}" if "epochs" in cost else "-",
        f"{cost['seconds_to_best']:.0f}" if "seconds_to_best" in cost else "-",
        f"{cost['peak_rss_mb']:.0f}" if "peak_rss_mb" in cost else "-",
    ]
    return f"{name:<24}" + " ".join(cells) + " " + " ".join(f"{t:>7}" for t in tail)


def run_dataset(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, dict]:
    seq_dir, base = sequences_for(name, workdir)
    rows = baselines(seq_dir, base.sequences.max_len, args.refit)
    for r in rows:
        print(f"{r['name']}: test ndcg@10 {r['test']['ndcg@10']:.4f} (masked {r['test']['masked/ndcg@10']:.4f})")
    means: dict[str, dict] = {}
    for family in args.families:
        runs = []
        for seed in range(args.first_seed, args.first_seed + (1 if family in CLOSED_FORM else args.seeds)):
            config = base.model_copy(deep=True)
            config.model.family, config.train.seed, config.train.num_threads = family, seed, args.threads
            config.train.eval_users, config.train.max_minutes = None, args.max_minutes
            override(config, args.set)
            run = train_run(config, seq_dir, workdir / name / f"{family}-seed{seed}")
            t = run["test"]
            print(
                f"{family} seed {seed}: test ndcg@10 {t['ndcg@10']:.4f} (masked {t['masked/ndcg@10']:.4f}), "
                f"valid {run['valid']['ndcg@10']:.4f}, {run['epochs']} epochs, {run['seconds_to_best']:.0f} s to best, "
                f"peak RSS {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            runs.append(run)
        keys = runs[0]["test"].keys()
        mean = {k: statistics.fmean(r["test"][k] for r in runs) for k in keys}
        std = {k: statistics.stdev(r["test"][k] for r in runs) if len(runs) > 1 else 0.0 for k in keys}
        cost = {k: statistics.fmean(r[k] for r in runs) for k in ("epochs", "seconds_to_best")}
        cost["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        means[family] = {"test": mean, "std": std, "cost": cost, "runs": len(runs)}
        if args.refit and family in CLOSED_FORM:
            means[f"{family} (refit)"] = refit_test(config, seq_dir)

    header = [*COLUMNS, *(f"m:{c}" for c in COLUMNS), *COLD, "epochs", "s→best", "RSS MB"]
    sizes = ", ".join(f"{h} over {rows[0]['test'].get(size, 0):.0f}" for h, (_, size) in COLD.items())
    print(f"\n{name}: test split, full ranking, every user; m: = seen items masked; ndcg@10 mean±std over seeds")
    print(f"cold slices: cu: users with 1-2 training events, ci: targets first seen in a held-out position ({sizes})")
    print(f"{'':<24}" + " ".join(f"{h:>{15 if h.endswith('ndcg@10') else 7}}" for h in header))
    for r in rows:
        print(fmt(r["name"], r["test"]))
    for family, m in means.items():
        runs = f"{m['runs']} run" + ("s" if m["runs"] > 1 else "")
        print(fmt(f"{family} ({runs})", m["test"], m["std"], m["cost"]))
    summarise(name, rows, means)
    return means


def summarise(name: str, rows: list[dict], means: dict[str, dict]) -> None:
    refits = {f: m for f, m in means.items() if f.endswith("(refit)")}
    means = {f: m for f, m in means.items() if f not in refits}
    if not means:
        return
    knn = next(r for r in rows if r["name"] == "last-item knn")["test"]
    best = max(means, key=lambda f: means[f]["test"]["ndcg@10"])
    ndcg = means[best]["test"]["ndcg@10"]
    print(f"best family: {best}, test NDCG@10 {ndcg:.4f} ({ndcg / knn['masked/ndcg@10']:.2f}x masked last-item kNN)")
    recurrent = [f for f in means if f in RECURRENT]
    if recurrent:
        top = max(recurrent, key=lambda f: means[f]["test"]["ndcg@10"])
        print(f"best recurrent: {top}, test NDCG@10 {means[top]['test']['ndcg@10']:.4f}")
    for what, target in TARGETS.get(name, {}).items():
        print(f"target ({what}): NDCG@10 >= {target}")
    if refits:
        top = max(refits, key=lambda f: refits[f]["test"]["ndcg@10"])
        refit_knn = next(r for r in rows if r["name"] == "last-item knn (refit)")["test"]["masked/ndcg@10"]
        ndcg = refits[top]["test"]["ndcg@10"]
        ratio = ndcg / refit_knn if refit_knn > 0 else math.nan
        print(f"refit protocol: best {top}, test NDCG@10 {ndcg:.4f} ({ratio:.2f}x the refit masked last-item kNN)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--threads", type=int, default=1, help="train.num_threads of each run")
    parser.add_argument("--max-minutes", type=float, default=None, help="train.max_minutes (default: no budget)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="more overrides")
    parser.add_argument("--workdir", type=Path, default=None, help="keep sequences and models here")
    parser.add_argument(
        "--refit", action="store_true", help="also test closed-form families refitted through validation"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-models-"))
    for name in args.datasets:
        run_dataset(name, args, workdir)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; workdir {workdir}")


if __name__ == "__main__":
    main()
