"""The moving average of the weights that training validates, checkpoints and publishes.

Lightning's ``WeightAveraging`` keeps the average (torch's ``AveragedModel``), swaps it into the
module for validation, saves it as the checkpoint's ``state_dict`` (the live weights under
``current_model_state``, restored on ``--resume``) and copies it into the module when training
ends. This module adds the warm-up of TensorFlow's ExponentialMovingAverage, so that short runs
are not stuck near the initial weights.
"""

from functools import partial
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging

from nightrec.config import TrainConfig


def warmup_ema(averaged: list[torch.Tensor], current: list[torch.Tensor], step: torch.Tensor, decay: float) -> None:
    """``averaged += weight * (current - averaged)`` in place, ``weight = 1 - min(decay, (1 + step) / (10 + step))``."""
    n = int(step)
    weight = 1.0 - min(decay, (1 + n) / (10 + n))
    for avg, param in zip(averaged, current, strict=True):
        avg.lerp_(param, weight)


class WarmupEMA(WeightAveraging):
    """An exponential moving average of the parameters with ``train.ema_decay`` and a warm-up.

    The average starts at the initial (or warm-started) weights and is updated after every
    optimizer step; ``AveragedModel`` counts that first copy, so its ``n_averaged`` equals
    ``trainer.global_step`` at each update.
    """

    def __init__(self, decay: float):
        super().__init__(use_buffers=False, multi_avg_fn=partial(warmup_ema, decay=decay))
        self.decay = decay

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._average_model.update_parameters(pl_module)  # the copy of step 0; --resume then loads its own

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Only fit resumes the average and the live weights. Testing or validating a checkpoint
        # reads its state_dict, which holds the average that was validated.
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


def weight_averaging(train: TrainConfig) -> list[Callback]:
    """The callbacks for ``train.ema_decay``: none when it is None."""
    return [WarmupEMA(train.ema_decay)] if train.ema_decay else []
