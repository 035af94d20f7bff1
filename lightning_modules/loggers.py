"""Where training's metrics go and what training prints: Lightning's own loggers, quietly.

``metrics.csv`` (Lightning's ``CSVLogger``) in the model folder holds every logged value per step
and epoch; with ``tensorboard`` installed, ``tensorboard --logdir MODEL_DIR`` shows the same.
Lightning's start-up banners, tips and deprecation notices of its dependencies are kept out of
the run's logs: they say nothing about this run.
"""

import importlib.util
import logging
import warnings
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

METRICS_CSV = "metrics.csv"  # CSVLogger's own file name, in the model folder
TENSORBOARD_DIR = "tensorboard"
# Messages about Lightning's environment, not about this run's training.
NOISE = (
    r".*is deprecated",  # deprecations inside Lightning and torch, not in this code
    r".*does not have many workers",  # num_workers is a setting (train.num_workers), chosen on purpose
    r"Experiment logs directory .* exists and is not empty",  # --resume: metrics.csv restarts, metrics.json keeps all
    r"Checkpoint directory .* exists and is not empty",  # the model folder holds its run-config.json first
)


def training_loggers(out: Path) -> list[Logger]:
    """``CSVLogger`` writing ``out/metrics.csv`` and, when TensorBoard is installed, a
    ``TensorBoardLogger`` under ``out/tensorboard``."""
    loggers: list[Logger] = [CSVLogger(save_dir=out, name="", version="")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(save_dir=out, name=TENSORBOARD_DIR, version="", default_hp_metric=False))
    return loggers


def quiet_lightning() -> None:
    """Only Lightning's warnings and errors reach the logs, and none of the known noise."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
