"""The training time budget (``train.max_minutes``): whole epochs that fit, and a stop inside an
epoch that leaves time for the evaluation after it.

``EpochBudget`` stops at an epoch boundary when the next epoch and the final test pass would not
fit in what is left, so the budget is not overrun by a last partial epoch. While the first epoch
runs (there is no epoch to judge by yet, and on a large log it alone can be longer than the
budget), it stops inside the epoch early enough that the validation of the weights reached and
the final test still end within the budget: the cost of an evaluation pass is measured on one
validation batch before training starts. Lightning's ``max_time`` stays as the last resort at
the budget itself.
"""

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn


def training_budget(max_minutes: float | None, warm_minutes: float | None, warm_started: bool) -> float | None:
    """Minutes of training tonight: ``train.warm_start_max_minutes`` for a warm start, else ``max_minutes``."""
    return warm_minutes if warm_started and warm_minutes is not None else max_minutes


class EpochBudget(Callback):
    """Stop after an epoch when another epoch plus one evaluation pass (the test) would pass the budget."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.stopped = False

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started = self.epoch_started = time.monotonic()
        self.eval_s = eval_pass_seconds(trainer, module)
        self.epochs_done = 0
        self.started -= time.monotonic() - self.epoch_started  # the estimate spent budget too
        self.epoch_started = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.epochs_done:  # from the first whole epoch on, the boundary rule below decides
            return
        # the validation of the partial epoch and the final test must still fit
        late = time.monotonic() - self.started + 2 * self.eval_s > self.seconds
        if trainer.strategy.reduce_boolean_decision(late, all=False) and not trainer.should_stop:
            trainer.should_stop = self.stopped = True

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_started = time.monotonic()

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.valid_started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        now = time.monotonic()
        epoch_s, valid_s = now - self.epoch_started, now - self.valid_started
        self.eval_s = valid_s
        self.epochs_done += 1
        # every rank takes the same decision (a collective): any rank out of time stops them all
        out_of_time = trainer.strategy.reduce_boolean_decision(
            now - self.started + epoch_s + valid_s > self.seconds, all=False
        )
        if out_of_time and not trainer.should_stop:
            trainer.should_stop = self.stopped = True


@torch.no_grad()
def eval_pass_seconds(trainer: L.Trainer, module: L.LightningModule) -> float:
    """Seconds of one validation pass, extrapolated from scoring and counting its first batch."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or not hasattr(module, "metrics"):
        return 0.0
    loader = datamodule.val_dataloader()
    batches = len(loader)
    if batches == 0:
        return 0.0
    batch = trainer.strategy.batch_to_device(next(iter(loader)))
    was_training = module.training
    module.eval()
    started = time.monotonic()
    module.metrics["valid"].update(module.score(batch), batch)
    seconds = (time.monotonic() - started) * batches
    module.metrics["valid"].reset()
    module.train(was_training)
    return seconds
