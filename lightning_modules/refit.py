"""The serve-time refit: the model that scores tonight has learned every known transition.

Training holds out each user's last items (the validation and test targets) to choose and judge
the model, so the validated weights have never seen the most recent transition of any user, the
one that says most about the next. After training (and after ``model.family: auto`` chose its
winner), ``refit_model`` extends each user's training sequence by those held-out targets and

- fits a closed-form family (item_cf, user_cf, ease) again on them, or
- fine-tunes a neural family ``train.refit_epochs`` epochs on them at ``train.lr`` x
  ``train.refit_lr_scale``, without weight averaging or validation (there is nothing left to
  validate on),

and writes the result as ``served.ckpt`` beside ``model.ckpt``. Only scoring reads it
(``load_model(..., served=True)``): the promotion gate, the reported metrics and the next night's
warm start keep the validated weights, which never saw the validation targets.

The refit spends what is left of the training budget and never more: a closed-form family refits
when its first fit's seconds still fit, a neural one stops at the budget inside its epoch (a
partial epoch is a shorter fine-tune), and with nothing left the validated weights serve.
"""

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import torch

from lightning_modules.closed_form import STOPPED_BY as CLOSED_FORM
from lightning_modules.data import SequenceDataModule
from lightning_modules.families import build_network
from lightning_modules.launch import is_rank_zero
from lightning_modules.loggers import quiet_lightning
from lightning_modules.model_io import load_model
from lightning_modules.module import NextItemModule
from lightning_modules.network import SequenceNetwork
from nightrec.config import NightrecConfig
from nightrec.layout import METRICS_FILE, SERVED_CKPT, TEST_FILE, TRAIN_FILE, VALID_FILE
from nightrec.schema import USER_IDX
from nightrec.sequences.splits import HISTORY, ITEMS, TARGET, WEIGHTS


def refit_frame(data: SequenceDataModule) -> pl.DataFrame:
    """``user_idx, items[, weights]``: each user's training sequence followed by their validation and
    test targets; a user too short to have a training sequence, their test (else validation)
    history and target. Appended targets weigh 1.

    With ``sequences.split: leave_last_out`` (the default) this is every user's whole sequence.
    With ``temporal`` it is the training part plus the two targets: events between the targets and
    after the test target are not in the sequence files' training form and are left out.
    """
    train = data._read(TRAIN_FILE)
    has_weights = WEIGHTS in train.columns
    valid = data._read(VALID_FILE).select(USER_IDX, pl.col(HISTORY).alias("_vh"), pl.col(TARGET).alias("_v"))
    test = data._read(TEST_FILE).select(USER_IDX, pl.col(HISTORY).alias("_th"), pl.col(TARGET).alias("_t"))
    extended = train.join(valid, on=USER_IDX, how="left").join(test, on=USER_IDX, how="left")
    columns = [pl.col(USER_IDX), pl.concat_list(ITEMS, "_v", "_t").list.drop_nulls().alias(ITEMS)]
    if has_weights:
        added = pl.col("_v").is_not_null().cast(pl.Int64) + pl.col("_t").is_not_null().cast(pl.Int64)
        ones = pl.lit(1.0, dtype=pl.Float32).repeat_by(added)
        columns.append(pl.concat_list(pl.col(WEIGHTS).cast(pl.List(pl.Float32)), ones).alias(WEIGHTS))
    frames = [extended.select(columns)]
    # users without a training sequence: their longest evaluation history and its target
    short = test.rename({"_th": HISTORY, "_t": TARGET}).join(train, on=USER_IDX, how="anti")
    only_valid = valid.rename({"_vh": HISTORY, "_v": TARGET}).join(train, on=USER_IDX, how="anti")
    short = pl.concat([short, only_valid.join(short, on=USER_IDX, how="anti")])
    rest = short.select(pl.col(USER_IDX), pl.concat_list(HISTORY, TARGET).alias(ITEMS))
    if has_weights:
        rest = rest.with_columns(pl.lit(1.0, dtype=pl.Float32).repeat_by(pl.col(ITEMS).list.len()).alias(WEIGHTS))
    frames.append(rest.cast(frames[0].schema))
    return pl.concat(frames).sort(USER_IDX)


def save_network(network: SequenceNetwork, path: Path) -> None:
    """A weights-only checkpoint in the form ``model_io.read_checkpoint`` reads, written atomically."""
    state = {f"network.{name}": value.detach().cpu() for name, value in network.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"hyper_parameters": {"arch": dict(network.arch)}, "state_dict": state}, tmp)
    os.replace(tmp, path)


def refit_model(
    config: NightrecConfig, sequences_dir: Path, out: Path, settings: dict[str, Any], seconds_left: float | None
) -> dict[str, Any]:
    """Refit the model in ``out`` on every known transition into ``out/served.ckpt``; returns what
    was done (``status`` ``refit`` or ``skipped``, with ``reason``, ``transitions_added``, seconds)."""
    out = Path(out)
    (out / SERVED_CKPT).unlink(missing_ok=True)  # a rerun never serves an older refit
    if not config.train.refit:
        return {"status": "skipped", "reason": "train.refit is off"}
    metrics = json.loads((out / METRICS_FILE).read_text()) if (out / METRICS_FILE).is_file() else {}
    started = time.perf_counter()
    deadline = None if seconds_left is None else started + seconds_left
    closed_form = metrics.get("stopped_by") == CLOSED_FORM
    # decided before the sequences are read: on a large log reading them is itself a minute
    needs = float(metrics.get("fit_seconds") or 0.0) if closed_form else 1.0
    if seconds_left is not None and needs > seconds_left:
        why = "no time left of the training budget"
        if closed_form:
            why = f"its fit takes {needs:.0f} s and {max(seconds_left, 0):.0f} s of the training budget are left"
        return {"status": "skipped", "reason": why}
    # a new shuffle of the windows; nothing is evaluated, so the evaluation rows are kept small
    data = SequenceDataModule.from_config(
        sequences_dir, config, pin_memory=settings["accelerator"] == "gpu", seed=config.train.seed + 1, eval_users=1
    )
    data.load()
    trained = len(data.train_lists[0])
    data.train_on(refit_frame(data), Path(sequences_dir) / "(refit)")
    added = len(data.train_lists[0]) - trained
    if added == 0:
        return {"status": "skipped", "reason": "no held-out transitions to learn"}
    if closed_form:
        family = config.model.model_copy(update={"family": metrics.get("family") or config.model.family})
        network = build_network(family, data.n_items, max(config.sequences.max_len, config.train.window_len or 0))
        network.fit(*data.train_lists[:2])
        done = {"status": "refit", "how": "closed-form fit on every known transition"}
    else:
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 1:
            why = "no time left of the training budget after reading the sequences"
            return {"status": "skipped", "reason": why, "transitions_added": added}
        network, _ = load_model(out)
        done = fine_tune(network, config, data, settings, left)
    if is_rank_zero():
        save_network(network, out / SERVED_CKPT)
    return {**done, "transitions_added": added, "seconds": round(time.perf_counter() - started, 2)}


def fine_tune(
    network: SequenceNetwork,
    config: NightrecConfig,
    data: SequenceDataModule,
    settings: dict[str, Any],
    seconds_left: float | None,
) -> dict[str, Any]:
    """``train.refit_epochs`` epochs of the validated weights on ``data``'s (refit) windows, at most
    ``seconds_left`` seconds; the network is left with the fine-tuned weights."""
    lr = config.train.lr * config.train.refit_lr_scale
    train = config.train.model_copy(update={"lr": lr, "lr_schedule": "none"})
    counts = data.items.get_column("count").to_list() if "count" in data.items.columns else None
    module = NextItemModule(network.train(), config.model, train, counts)
    quiet_lightning()
    trainer = L.Trainer(
        **settings,
        max_epochs=config.train.refit_epochs,
        max_time=timedelta(seconds=seconds_left) if seconds_left is not None else None,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        gradient_clip_val=config.train.grad_clip,
    )
    trainer.fit(module, datamodule=data)
    planned = max(int(trainer.num_training_batches), 1) * config.train.refit_epochs
    return {
        "status": "refit",
        "how": f"fine-tuned at lr {lr:g} on every known transition",
        "steps": trainer.global_step,
        "planned_steps": planned,
        "stopped_by": "time_budget" if trainer.global_step < planned else "refit_epochs",
    }
