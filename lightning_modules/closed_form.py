"""Training a closed-form family (item_cf, user_cf, ease): one fit, then the neural path's evaluation.

The network is fitted from the training sequences, then validated and tested by the same
``NextItemModule`` through ``trainer.validate``/``trainer.test``, so ``metrics.json`` has the
keys a trained model's has. Its history is one entry, epoch 0 (``epochs`` is 1); ``stopped_by``
is ``closed_form``. ``--resume`` and ``--warm-start`` refit from scratch: there is nothing to
continue and nothing to warm.
"""

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_modules.data import SequenceDataModule
from lightning_modules.loggers import quiet_lightning, training_loggers
from lightning_modules.module import NextItemModule
from nightrec.config import NightrecConfig
from nightrec.layout import BEST_CKPT, LAST_CKPT
from nightrec.progress import EPOCH, progress_line

STOPPED_BY = "closed_form"


def _fit_and_validate(
    config: NightrecConfig,
    data: SequenceDataModule,
    network: Any,
    out: Path,
    settings: dict[str, Any],
    callbacks: list[Callback] | None,
) -> tuple[NextItemModule, L.Trainer, float]:
    """Fit ``network`` and validate it; returns the module, its trainer and the fit's seconds."""
    started = time.perf_counter()
    flat, lengths, _ = data.train_lists
    network.fit(flat, lengths)
    fit_s = time.perf_counter() - started
    # Built after fitting: the module saves network.arch, which now holds the buffers' sizes.
    module = NextItemModule(network, config.model, config.train)
    quiet_lightning()
    trainer = L.Trainer(
        **settings,
        max_epochs=1,
        callbacks=callbacks or [],
        logger=training_loggers(out),
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=out,
    )
    trainer.validate(module, datamodule=data, verbose=False)
    entry = module.history[-1]
    entry["epoch_s"] = entry["elapsed_s"] = time.perf_counter() - started  # fit and validation
    return module, trainer, fit_s


def fit_closed_form(
    config: NightrecConfig,
    data: SequenceDataModule,
    network: Any,
    out: Path,
    settings: dict[str, Any],
    warm_start_dir: Path | None = None,
    callbacks: list[Callback] | None = None,
) -> tuple[dict[str, Any], L.Trainer]:
    """Fit ``network`` (each of its ``variants``, keeping the best on validation NDCG@10), checkpoint
    and test it; returns ``(metrics, trainer)``."""
    if warm_start_dir is not None:
        print(f"warm start skipped: {network.family} is fitted in closed form; refitting from scratch", flush=True)
    grid, best = [], None
    for variant in network.variants():
        module, trainer, fit_s = _fit_and_validate(config, data, variant, out, settings, callbacks)
        entry = module.history[-1]
        grid.append({**_settings(variant), "valid_ndcg@10": entry["valid"]["ndcg@10"], "fit_seconds": fit_s})
        if best is None or entry["valid"]["ndcg@10"] > best[0].history[-1]["valid"]["ndcg@10"]:
            best = (module, trainer, fit_s)
    module, trainer, fit_s = best
    entry = module.history[-1]
    for name in (BEST_CKPT, LAST_CKPT):
        trainer.save_checkpoint(Path(out) / name)
    if trainer.is_global_zero:
        valid = {name: entry["valid"][name] for name in ("ndcg@10", "recall@10", "masked/ndcg@10")}
        print(progress_line(EPOCH, epoch=0, loss=None, valid=valid, epoch_s=round(entry["epoch_s"], 2)), flush=True)
    best_path = Path(out) / BEST_CKPT
    trainer.test(module, datamodule=data, ckpt_path=best_path, verbose=False)
    metrics = {
        "valid": entry["valid"],
        "test": module.test_results,
        "best_checkpoint": str(best_path.resolve()),
        "best_epoch": 0,
        "epochs": 1,
        "seconds_to_best": entry["elapsed_s"],
        "seconds_per_epoch": entry["epoch_s"],
        "fit_seconds": fit_s,
        "stopped_by": STOPPED_BY,
        "max_minutes": None,
        "objective": {"loss": STOPPED_BY, "reason": f"model.family={network.family}: fitted in closed form"},
        "warm_start": None,
        "history_weight": None,
        "history": list(module.history),
        "settings": {k: str(v) for k, v in settings.items()} | {"world_size": trainer.world_size},
    }
    if len(grid) > 1:
        metrics["grid"] = grid  # every setting fitted, and its validation NDCG@10
    return metrics, trainer


def _settings(variant: Any) -> dict[str, Any]:
    """A variant's settings as ``metrics.json`` lists them (its arch, less sizes)."""
    return {k: v for k, v in variant.arch.items() if k not in ("family", "n_items", "nnz")}
