"""The training time budget (``train.max_minutes``): whole epochs that fit, and a hard stop.

Lightning's ``max_time`` is the hard stop: it ends training mid-epoch, and Lightning then
validates the partial epoch. ``EpochBudget`` stops earlier, at an epoch boundary, when the next
epoch and the final test pass would not fit in what is left, so the budget is not overrun by a
last partial epoch and its validation.
"""

import time

import lightning as L
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

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_started = time.monotonic()

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.valid_started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        now = time.monotonic()
        epoch_s, valid_s = now - self.epoch_started, now - self.valid_started
        # every rank takes the same decision (a collective): any rank out of time stops them all
        out_of_time = trainer.strategy.reduce_boolean_decision(
            now - self.started + epoch_s + valid_s > self.seconds, all=False
        )
        if out_of_time and not trainer.should_stop:
            trainer.should_stop = self.stopped = True
