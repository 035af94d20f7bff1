"""Closed-form collaborative filtering (item_cf, user_cf, ease): settings chosen on validation only.

    nice -n 19 python benchmarks/bench_cf.py --sequences SEQ_DIR [--families item_cf user_cf ease]

Each family is fitted in process over a small grid of its settings (``model.neighbors``,
``model.shrinkage``, ``model.recency_decay``, ``model.ease_l2``); every fit is judged on the
validation split by the trainer's evaluator, in both protocols (unmasked and seen items
masked). Only the setting with the best validation NDCG@10 (``--select``) and the config's
defaults are then ranked on test, so the test split never chooses anything. Numbers are measured,
never asserted; seconds are the fit plus the validation ranking.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_modules.data import SequenceDataModule  # noqa: E402
from lightning_modules.families import FAMILIES  # noqa: E402
from lightning_modules.recommend import ModelRecommender  # noqa: E402
from nightrec.config import ModelConfig  # noqa: E402

GRIDS = {
    "item_cf": {"neighbors": [50, 200, 1000], "shrinkage": [0.0, 10.0, 100.0], "recency_decay": [0.3, 0.5, 0.8, 1.0]},
    "user_cf": {"neighbors": [50, 200, 500], "shrinkage": [0.0, 10.0], "recency_decay": [0.3, 0.5, 0.8, 1.0]},
    "ease": {"l2": [50.0, 250.0, 1000.0, 3000.0], "recency_decay": [0.3, 0.5, 0.8, 1.0]},
}
# Settings only the scores read: changed on a fitted network instead of refitting it.
SCORE_ONLY = ("recency_decay",)


def defaults(family: str) -> dict:
    m = ModelConfig()
    if family == "ease":
        return {"l2": m.ease_l2, "recency_decay": m.recency_decay}
    return {"neighbors": m.neighbors, "shrinkage": m.shrinkage, "recency_decay": m.recency_decay}


def sweep(family: str, data: SequenceDataModule, max_len: int, grid: dict) -> list[dict]:
    """Validation metrics of every grid point, fitting once per setting the fit reads."""
    flat, lengths, _ = data.train_lists
    fit_keys = [k for k in grid if k not in SCORE_ONLY]
    score_keys = [k for k in grid if k in SCORE_ONLY]
    results = []
    for fit_values in itertools.product(*(grid[k] for k in fit_keys)):
        started = time.perf_counter()
        network = FAMILIES[family](data.n_items, **dict(zip(fit_keys, fit_values, strict=True)))
        network.fit(flat, lengths)
        fit_s = time.perf_counter() - started
        for score_values in itertools.product(*(grid[k] for k in score_keys)):
            network.arch.update(zip(score_keys, score_values, strict=True))
            started = time.perf_counter()
            valid = ModelRecommender(network, data.items, max_len).evaluate(data.eval_rows["valid"])
            setting = {k: network.arch[k] for k in grid}
            results.append({"setting": setting, "valid": valid, "seconds": fit_s + time.perf_counter() - started})
            print(
                f"{family} {setting}: valid ndcg@10 {valid['ndcg@10']:.4f} masked {valid['masked/ndcg@10']:.4f}, "
                f"{results[-1]['seconds']:.1f} s",
                flush=True,
            )
    return results


def test_of(family: str, setting: dict, data: SequenceDataModule, max_len: int) -> dict:
    network = FAMILIES[family](data.n_items, **setting)
    network.fit(*data.train_lists[:2])
    return ModelRecommender(network, data.items, max_len).evaluate(data.eval_rows["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, required=True, help="a folder written by write_sequences")
    parser.add_argument("--families", nargs="+", default=list(GRIDS))
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--select", choices=["ndcg@10", "masked/ndcg@10"], default="masked/ndcg@10")
    parser.add_argument("--grid", type=json.loads, default={}, help='JSON, e.g. {"ease": {"l2": [250.0]}}')
    args = parser.parse_args()
    for family, grid in args.grid.items():
        GRIDS[family].update(grid)
    data = SequenceDataModule(args.sequences, max_len=args.max_len, eval_users=None)
    data.load()
    print(f"{args.sequences}: {data.n_items} items, {len(data.train_lists[1])} training sequences")
    for family in args.families:
        results = sweep(family, data, args.max_len, GRIDS[family])
        best = max(results, key=lambda r: r["valid"][args.select])
        default = next((r for r in results if r["setting"] == defaults(family)), None)
        for label, setting in (("best on valid", best["setting"]), ("defaults", defaults(family))):
            test = test_of(family, setting, data, args.max_len)
            valid = next((r["valid"] for r in results if r["setting"] == setting), None)
            valid_txt = f"valid {valid['ndcg@10']:.4f}/{valid['masked/ndcg@10']:.4f}" if valid else "valid -"
            print(
                f"== {family} {label} {setting}: {valid_txt}; test ndcg@10 {test['ndcg@10']:.4f}, "
                f"masked {test['masked/ndcg@10']:.4f}, recall@10 {test['recall@10']:.4f} "
                f"(masked {test['masked/recall@10']:.4f})",
                flush=True,
            )
        if default is None:
            print(f"{family}: the defaults are not on the grid", flush=True)


if __name__ == "__main__":
    main()
