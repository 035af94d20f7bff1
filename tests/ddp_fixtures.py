"""Run as a script by ``test_ddp.py``: real DDP training (2 CPU processes, gloo) with a shard recorder.

Lightning's DDP launcher re-runs this same command line for rank 1, so it must be a file, not ``-c``.
Usage: ``python tests/ddp_fixtures.py CONFIG.json SEQUENCES_DIR OUT_DIR``.
"""

import json
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class ShardRecorder(Callback):
    """Writes the training batches (window ids) each rank ran, per epoch, to ``shards_rank<r>.json``."""

    def __init__(self, out: Path):
        self.out, self.seen = out, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.setdefault(trainer.current_epoch, []).append(batch["window"].tolist())

    def on_fit_end(self, trainer, module) -> None:
        path = self.out / f"shards_rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"world_size": trainer.world_size, "epochs": self.seen}))


if __name__ == "__main__":
    from lightning_modules.train import fit, load_run_config

    config_path, sequences, out = (Path(arg) for arg in sys.argv[1:4])
    out.mkdir(parents=True, exist_ok=True)
    fit(load_run_config(config_path), sequences, out, callbacks=[ShardRecorder(out)])
