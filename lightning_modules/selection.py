"""``model.family: auto``: train every candidate family within the night's budget, serve the best.

Each candidate trains with the ordinary ``fit`` into ``<out>/candidates/<family>/`` and gets an
equal share of what is left of the budget when its turn comes, so time a quick family (the
closed-form CF ones take seconds) does not use passes to the next. A candidate that refuses the
catalogue (``model.item_cf_max_items``, ``model.ease_max_items``) is skipped, and says why. The
winner is the best on validation NDCG@10 (the promotion gate's metric; ties go to the earlier
candidate); its files become the model folder's own, so everything downstream sees one model of
one family. The losers keep their ``metrics.json`` and curve for the report, not their
checkpoints.

A rerun in the same folder (the flow's retry after a crash) keeps every candidate that finished
and resumes the one that was training.
"""

import shutil
import time
from pathlib import Path
from typing import Any

import polars as pl

from lightning_modules.baselines import ItemKNNRecommender
from lightning_modules.data import SequenceDataModule
from lightning_modules.families import too_large
from lightning_modules.launch import is_rank_zero
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.layout import BEST_CKPT, CURVE_FILE, ITEMS_FILE, LAST_CKPT, METRICS_FILE
from nightrec.registry import read_json

CANDIDATES_DIR = "candidates"
GATE = "ndcg@10"
KNN = "last-item knn"


def candidate_config(config: NightrecConfig, family: str, minutes: float | None) -> NightrecConfig:
    """``config`` for one candidate: its family, and its share of the budget (warm or not)."""
    model = config.model.model_copy(update={"family": family})
    train = config.train.model_copy(update={"max_minutes": minutes, "warm_start_max_minutes": minutes})
    return config.model_copy(update={"model": model, "train": train})


def budget_minutes(config: NightrecConfig, warm: bool) -> float | None:
    if warm and config.train.warm_start_max_minutes is not None:
        return config.train.warm_start_max_minutes
    return config.train.max_minutes


def fit_auto(
    config: NightrecConfig, sequences_dir: Path, out: Path, resume: bool = False, warm_start_dir: Path | None = None
) -> dict[str, Any]:
    """Train ``config.model.candidates`` one after another, keep the best; returns its metrics plus a
    ``selection`` block (every candidate's validation and test numbers, seconds, epochs) and the
    last-item kNN baseline on the same validation users."""
    from lightning_modules.train import fit

    out = Path(out)
    n_items = pl.scan_parquet(Path(sequences_dir) / ITEMS_FILE).select(pl.len()).collect().item()
    skipped = {f: why for f in dict.fromkeys(config.model.candidates) if (why := refusal(config, f, n_items))}
    for family, why in skipped.items():
        print(f"auto: skipping candidate {family}: {why}", flush=True)
    candidates = [f for f in dict.fromkeys(config.model.candidates) if f not in skipped]
    if not candidates:
        raise ConfigError(f"model.candidates: every candidate refuses this catalogue of {n_items:,} items")
    budget = budget_minutes(config, warm_start_dir is not None)
    started = time.monotonic()
    # first, inside the budget: on a large catalogue ranking the validation users takes a minute
    baselines = {KNN: knn_valid_metrics(config, sequences_dir)} if is_rank_zero() else None
    results: dict[str, dict[str, Any]] = {}
    for turn, family in enumerate(candidates):
        folder = out / CANDIDATES_DIR / family
        if (folder / METRICS_FILE).is_file():  # finished before a crash: keep it
            results[family] = read_json(folder / METRICS_FILE)
            continue
        share = None
        if budget is not None:
            left = budget - (time.monotonic() - started) / 60
            share = max(left, 0.1) / (len(candidates) - turn)
        print(f"auto: training candidate {family} ({_minutes(share)})", flush=True)
        results[family] = fit(
            candidate_config(config, family, share),
            sequences_dir,
            folder,
            resume=(folder / LAST_CKPT).is_file(),
            warm_start_dir=warm_start_dir,
        )
    winner = max(candidates, key=lambda f: (results[f]["valid"][GATE], -candidates.index(f)))
    print(f"auto: serving {winner} (valid {GATE} {results[winner]['valid'][GATE]:.4f})", flush=True)
    metrics = dict(results[winner])
    metrics["family"] = winner
    metrics["selection"] = {family: _summary(results[family], family == winner) for family in candidates}
    metrics["selection"].update({family: {"selected": False, "skipped": why} for family, why in skipped.items()})
    if is_rank_zero():
        metrics["baselines"] = baselines
        adopt(out, out / CANDIDATES_DIR / winner, candidates)
    metrics["best_checkpoint"] = str((out / BEST_CKPT).resolve())
    return metrics


def refusal(config: NightrecConfig, family: str, n_items: int) -> str | None:
    """Why candidate ``family`` refuses the catalogue (``model.item_cf_max_items``, ``ease_max_items``)."""
    return too_large(config.model.model_copy(update={"family": family}), n_items)


def _minutes(share: float | None) -> str:
    return "no time budget" if share is None else f"{share:.1f} min of the budget"


def _summary(metrics: dict[str, Any], selected: bool) -> dict[str, Any]:
    return {
        "selected": selected,
        "valid": metrics["valid"],
        "test": metrics.get("test", {}),
        "epochs": metrics.get("epochs"),
        "seconds": metrics.get("fit_seconds"),
        "stopped_by": metrics.get("stopped_by"),
    }


def adopt(out: Path, winner: Path, candidates: list[str]) -> None:
    """The winner's checkpoints and curve become ``out``'s; the losers' checkpoints are deleted."""
    for name in (BEST_CKPT, LAST_CKPT, CURVE_FILE):
        if (winner / name).is_file():
            shutil.copy2(winner / name, out / name)
    for family in candidates:
        folder = out / CANDIDATES_DIR / family
        if folder != winner:
            for name in (BEST_CKPT, LAST_CKPT):
                (folder / name).unlink(missing_ok=True)


def knn_valid_metrics(config: NightrecConfig, sequences_dir: Path) -> dict[str, float]:
    """The last-item co-occurrence kNN on the candidates' validation users: the floor any family must beat."""
    data = SequenceDataModule(
        sequences_dir,
        max_len=config.sequences.max_len,
        eval_batch_size=config.train.eval_batch_size,
        eval_users=config.train.eval_users,
    )
    data.load()
    flat, lengths, _ = data.train_lists
    knn = ItemKNNRecommender(data.items, flat, lengths, max_len=config.sequences.max_len)
    return knn.evaluate(data.eval_rows["valid"], batch_size=config.train.eval_batch_size)
