"""Training entry point: ``python -m lightning_modules.train --config CONFIG.json --sequences DIR --out MODEL_DIR``.

Runs as its own process (Prefect never hosts DDP ranks). Writes ``model.ckpt`` (best validation
NDCG@10), ``served.ckpt`` (it refitted on every known transition, ``lightning_modules.refit``),
``last.ckpt``, ``config.json``, ``items.parquet``, ``metrics.json`` and ``curve.png``.
Exit code 0 on success, 2 on bad input or config, 1 on anything else.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from pydantic import ValidationError

from lightning_modules.attributes import vocabulary_rows
from lightning_modules.averaging import weight_averaging
from lightning_modules.budget import EpochBudget, training_budget
from lightning_modules.closed_form import fit_closed_form
from lightning_modules.data import SequenceDataModule
from lightning_modules.families import build_network, normalise_arch
from lightning_modules.launch import is_rank_zero, node_strategy
from lightning_modules.lifeline import die_with_parent
from lightning_modules.loggers import quiet_lightning, training_loggers
from lightning_modules.model_io import check_compatible, read_checkpoint, warm_start
from lightning_modules.module import MONITOR, NextItemModule
from lightning_modules.network import SequenceNetwork
from lightning_modules.refit import refit_model
from lightning_modules.scoring import scoring_device
from lightning_modules.selection import fit_auto
from lightning_modules.teacher import add_teacher
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError, NightrecError
from nightrec.layout import BEST_CKPT, CONFIG_FILE, CURVE_FILE, ITEMS_FILE, LAST_CKPT, METRICS_FILE
from nightrec.progress import DONE, EPOCH, REFIT, progress_line


class EpochLog(Callback):
    """One JSON progress line per epoch on stdout (``nightrec.progress``); only rank 0 prints.

    Printed at the end of the training epoch, after the epoch's checkpoints are on disk.
    """

    def on_train_epoch_end(self, trainer, module) -> None:
        if not trainer.is_global_zero or not module.history:
            return
        h = module.history[-1]
        v = h["valid"]
        valid = {name: v[name] for name in ("ndcg@10", "recall@10", "masked/ndcg@10")}
        line = progress_line(EPOCH, epoch=h["epoch"], loss=h["train_loss"], valid=valid, epoch_s=round(h["epoch_s"], 2))
        print(line, flush=True)


def trainer_settings(config: NightrecConfig) -> dict[str, Any]:
    """Lightning accelerator/devices/num_nodes/strategy/precision from the config, checked against the machine."""
    tc = config.train
    gpu_wanted = tc.accelerator in ("gpu", "cuda")
    if gpu_wanted and not torch.cuda.is_available():
        raise ConfigError(
            f"train.accelerator: '{tc.accelerator}' asks for a GPU but this machine has none "
            "(set NIGHTREC_TRAIN__ACCELERATOR=cpu or auto)"
        )
    on_gpu = scoring_device(tc.accelerator) == "cuda"  # the GPU the night then scores on too
    if isinstance(tc.devices, int) and tc.devices < 1:
        raise ConfigError("train.devices: must be a positive number or 'auto'")
    if on_gpu and isinstance(tc.devices, int) and tc.devices > torch.cuda.device_count():
        raise ConfigError(f"train.devices: {tc.devices} GPUs asked for, {torch.cuda.device_count()} visible")
    precision = tc.precision if tc.precision != "auto" else ("bf16-mixed" if on_gpu else "32-true")
    if precision.startswith("bf16") and not on_gpu and tc.precision != "auto":
        raise ConfigError(f"train.precision: '{precision}' is meant for GPUs; use 32-true on CPU")
    devices = tc.devices if on_gpu or tc.devices != "auto" else 1
    return {
        "accelerator": "gpu" if on_gpu else "cpu",
        "devices": devices,
        "num_nodes": tc.num_nodes,
        "strategy": node_strategy(tc),
        "precision": precision,
    }


def fit(
    config: NightrecConfig,
    sequences_dir: Path,
    out: Path,
    resume: bool = False,
    warm_start_dir: Path | None = None,
    callbacks: list[Callback] | None = None,
) -> dict[str, Any]:
    """Train, select the best epoch on validation NDCG@10, test it; returns (and writes) the metrics."""
    out = Path(out)
    settings = trainer_settings(config)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    data = SequenceDataModule.from_config(sequences_dir, config, pin_memory=settings["accelerator"] == "gpu")
    data.load()
    network = build_network(config.model, data.n_items, max(config.sequences.max_len, config.train.window_len or 0))
    if getattr(network, "attributes", None) is not None:  # before a warm start, which keeps these rows
        network.attributes.set_rows(vocabulary_rows(config, data.items))
    if network.closed_form:  # fitted, not trained: --resume and --warm-start refit
        return finish(
            out, config, data, *fit_closed_form(config, data, network, out, settings, warm_start_dir, callbacks)
        )
    teacher = add_teacher(config, data) if config.model.teacher != "none" else None
    resume_path = out / LAST_CKPT if resume else None
    if resume_path is not None:
        check_compatible(resume_path, read_checkpoint(resume_path)["hyper_parameters"]["arch"], network.arch)
    if warm_start_dir is not None and not resume and (why := other_model(warm_start_dir, network)):
        print(f"warm start skipped: {why}; training from scratch", flush=True)
        warm_start_dir = None
    warm = warm_start(network, data.items, warm_start_dir) if warm_start_dir is not None and not resume else None
    counts = data.items.get_column("count").to_list() if "count" in data.items.columns else None
    module = NextItemModule(network, config.model, config.train, counts)
    if is_rank_zero():
        print(f"objective: {module.objective} ({module.objective_reason})", flush=True)
    checkpoint = ModelCheckpoint(
        dirpath=out,
        filename=Path(BEST_CKPT).stem,
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
        save_on_train_epoch_end=False,  # save after validation, before EpochLog reports the epoch
    )
    patience = config.train.warm_start_patience if warm_start_dir is not None else config.train.patience
    early = EarlyStopping(monitor=MONITOR, mode="max", patience=patience, check_on_train_epoch_end=False)
    budget = training_budget(config.train.max_minutes, config.train.warm_start_max_minutes, warm_start_dir is not None)
    epoch_budget = [EpochBudget(budget)] if budget else []
    quiet_lightning()
    trainer = L.Trainer(
        **settings,
        max_epochs=config.train.epochs,
        max_time={"minutes": budget} if budget else None,
        callbacks=[checkpoint, early, *epoch_budget, *weight_averaging(config.train), EpochLog(), *(callbacks or [])],
        logger=training_loggers(out),
        log_every_n_steps=1,  # nightly data is small: every step's loss in metrics.csv
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        gradient_clip_val=config.train.grad_clip,
        default_root_dir=out,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=resume_path)
    fit_s = time.perf_counter() - started
    stopped_by = stop_reason(trainer, early, budget)
    best_path = checkpoint.best_model_path or budget_checkpoint(trainer, module, data, out)
    history = list(module.history)
    trainer.test(module, datamodule=data, ckpt_path=best_path, verbose=False)
    best = max(history, key=lambda h: h["valid"]["ndcg@10"])
    metrics = {
        "valid": best["valid"],
        "test": module.test_results,
        "best_checkpoint": str(Path(best_path).resolve()),
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "seconds_to_best": best["elapsed_s"],
        "seconds_per_epoch": sum(h["epoch_s"] for h in history) / len(history),
        "fit_seconds": fit_s,
        "stopped_by": stopped_by,
        "max_minutes": budget,
        "objective": {"loss": module.objective, "reason": module.objective_reason},
        "warm_start": warm,
        # The learned offset on items already in the history (None without model.history_bias).
        "history_weight": _history_weight(module),
        "history": history,
        "settings": {k: str(v) for k, v in settings.items()} | {"world_size": trainer.world_size},
    }
    if teacher is not None:
        metrics["teacher"] = teacher
    return finish(out, config, data, metrics, trainer)


def finish(
    out: Path, config: NightrecConfig, data: SequenceDataModule, metrics: dict[str, Any], trainer: L.Trainer
) -> dict[str, Any]:
    """Write the model folder's config, vocabulary, metrics and curve (rank 0); returns ``metrics``."""
    if trainer.is_global_zero:
        write_outputs(out, config, data.dir, metrics)
    return metrics


def other_model(model_dir: Path, network: SequenceNetwork) -> str | None:
    """Why ``model_dir`` cannot warm-start ``network`` because it is another kind of model, or None.

    A night after ``model.family`` or ``model.item_attributes`` changed starts the new model from
    scratch; any other disagreement (sizes of the same family) stays an error.
    """
    saved = normalise_arch(read_checkpoint(Path(model_dir) / BEST_CKPT)["hyper_parameters"]["arch"])
    name = Path(model_dir).name
    if saved["family"] != network.family:
        return f"{name} is a {saved['family']} model and this one is {network.family}"
    hybrid = network.arch.get("item_attributes", False)
    if saved.get("item_attributes", False) != hybrid:
        return f"{name} was trained {'without' if hybrid else 'with'} model.item_attributes"
    return None


def stop_reason(trainer: L.Trainer, early: EarlyStopping, budget: float | None) -> str:
    """Why training ended: ``time_budget`` (train.max_minutes), ``early_stopping`` or ``max_epochs``."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    epochs = next((c for c in trainer.callbacks if isinstance(c, EpochBudget)), None)
    if (epochs is not None and epochs.stopped) or (
        timer is not None and budget and timer.time_elapsed("train") >= budget * 60
    ):
        return "time_budget"
    return "early_stopping" if early.stopped_epoch > 0 else "max_epochs"


def budget_checkpoint(trainer: L.Trainer, module: NextItemModule, data: SequenceDataModule, out: Path) -> str:
    """The time budget ran out inside the first epoch: validate the weights reached and keep them."""
    trainer.validate(module, datamodule=data, verbose=False)
    path = out / BEST_CKPT
    trainer.save_checkpoint(path)
    return str(path)


def _history_weight(module: NextItemModule) -> float | None:
    weight = module.eval_network.history_weight
    return None if weight is None else float(weight.detach())


def write_outputs(out: Path, config: NightrecConfig, sequences_dir: Path, metrics: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    shutil.copyfile(Path(sequences_dir) / ITEMS_FILE, out / ITEMS_FILE)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    plot_curve(metrics["history"], out / CURVE_FILE)


def plot_curve(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and validation NDCG@10 (both protocols) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_ndcg) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax_ndcg.plot(epochs, [h["valid"]["ndcg@10"] for h in history], marker="o", label="unmasked")
    ax_ndcg.plot(epochs, [h["valid"]["masked/ndcg@10"] for h in history], marker="o", label="seen masked")
    ax_ndcg.set(xlabel="epoch", ylabel="valid NDCG@10", title="validation")
    ax_ndcg.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="NightrecConfig as JSON (model_dump_json)")
    parser.add_argument("--sequences", required=True, type=Path, help="folder written by write_sequences")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/last.ckpt")
    parser.add_argument("--warm-start", type=Path, default=None, metavar="PREV_MODEL_DIR")
    return parser.parse_args(argv)


def load_run_config(path: Path) -> NightrecConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return NightrecConfig.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: invalid configuration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    args = parse_args(argv)
    started = time.monotonic()
    try:
        config = load_run_config(args.config)
        if config.model.family == "auto":  # each candidate resumes on its own (see selection)
            metrics = fit_auto(config, args.sequences, args.out, warm_start_dir=args.warm_start)
            if is_rank_zero():
                write_outputs(args.out, config, args.sequences, metrics)
        else:
            if args.resume and not (args.out / LAST_CKPT).is_file():
                raise ConfigError(f"{args.out / LAST_CKPT}: --resume given but there is no checkpoint to resume")
            metrics = fit(config, args.sequences, args.out, resume=args.resume, warm_start_dir=args.warm_start)
        budget = training_budget(config.train.max_minutes, config.train.warm_start_max_minutes, bool(args.warm_start))
        left = None if budget is None else budget * 60 - (time.monotonic() - started)
        metrics["refit"] = refit_model(config, args.sequences, args.out, trainer_settings(config), left)
        if is_rank_zero():
            print(progress_line(REFIT, **metrics["refit"]), flush=True)
            (args.out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    except NightrecError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if is_rank_zero():
        test = {name: metrics["test"][name] for name in ("ndcg@10", "recall@10", "mrr@10", "masked/ndcg@10")}
        print(progress_line(DONE, best_epoch=metrics["best_epoch"], epochs=metrics["epochs"], test=test), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
