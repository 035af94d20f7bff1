"""What a trained neural model gains from a warm fine-tune through the validation targets.

    python benchmarks/bench_models.py --datasets amazon --families lstm --seeds 1 --workdir W
    nice -n 10 python benchmarks/bench_refit.py --model W/amazon/lstm-seed0 --sequences W/amazon/sequences

The model folder's best checkpoint is fine-tuned, ``--epochs`` epochs at ``--lr``, twice: on its
own training sequences (control: what more epochs alone do) and on them plus each user's
validation target (refit: what the most recent transitions add). Test NDCG@10 after each epoch,
every user, full ranking. This is the measurement behind the nightly's serve-time refit
(``lightning_modules.refit``), whose fine-tune it runs. Numbers are measured, never asserted.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_models import through_validation_frame  # noqa: E402
from lightning_modules.data import SequenceDataModule  # noqa: E402
from lightning_modules.loggers import quiet_lightning  # noqa: E402
from lightning_modules.model_io import load_model  # noqa: E402
from lightning_modules.recommend import ModelRecommender  # noqa: E402
from lightning_modules.refit import fine_tune  # noqa: E402
from nightrec.config import NightrecConfig  # noqa: E402
from nightrec.layout import CONFIG_FILE, TRAIN_FILE  # noqa: E402


def refit_sequences(sequences: Path, out: Path) -> Path:
    """A copy of the sequence folder whose training sequences end with the validation target."""
    shutil.copytree(sequences, out)
    data = SequenceDataModule(sequences, max_len=2)
    data.load()
    through_validation_frame(data).write_parquet(out / TRAIN_FILE)
    return out


def fine_tune_epochs(model_dir: Path, sequences: Path, config: NightrecConfig, epochs: int) -> list[float]:
    """Test NDCG@10 before and after each of ``epochs`` fine-tuning epochs at ``config.train.lr``,
    through the nightly refit's own fine-tune (``lightning_modules.refit.fine_tune``)."""
    network, items = load_model(model_dir)
    data = SequenceDataModule.from_config(sequences, config, eval_users=None)
    data.load()
    scores = [ModelRecommender(network, items).evaluate(data.eval_rows["test"])["ndcg@10"]]
    one_epoch = config.model_copy(deep=True)
    one_epoch.train.refit_epochs, one_epoch.train.refit_lr_scale = 1, 1.0
    for _ in range(epochs):
        fine_tune(network, one_epoch, data, {"accelerator": "cpu", "devices": 1}, None)
        scores.append(ModelRecommender(network, items).evaluate(data.eval_rows["test"])["ndcg@10"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by the training entry point")
    parser.add_argument("--sequences", type=Path, required=True, help="the sequence folder it was trained on")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-4, 3e-3])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_lightning()
    config = NightrecConfig.model_validate(json.loads((args.model / CONFIG_FILE).read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        refit = refit_sequences(args.sequences, Path(tmp) / "refit")
        print(f"test NDCG@10 after each fine-tuning epoch (epoch 0: the model as trained), {args.model}")
        for lr in args.lr:
            config.train.lr = lr
            for name, sequences in (("control", args.sequences), ("refit", refit)):
                scores = fine_tune_epochs(args.model, sequences, config, args.epochs)
                print(f"lr {lr:g} {name:<8} " + " ".join(f"{s:.4f}" for s in scores), flush=True)


if __name__ == "__main__":
    main()
