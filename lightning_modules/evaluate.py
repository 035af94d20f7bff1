"""A model folder judged on a sequences folder's validation split: the promotion gate's view of
the champion on tonight's window (the candidate's own numbers come from its ``metrics.json``).

Full-catalogue ranking without seen-item masking, counted by the same ``RankingAccumulator`` the
trainer validates with, on the same ``train.eval_users`` sample of users. Items are matched by
external id, so a model trained on an older vocabulary is judged fairly: an item it has never
seen is dropped from histories and counts as a miss as a target, and so does a user left with
an empty history. Rows are scored in order of history length, each batch cut to its longest.
Of the slices, the cold users' and cold items' are kept (tonight's definitions, from the
sequences folder, so the champion's slices cut the same targets as the candidate's).
"""

from pathlib import Path

import numpy as np
import polars as pl
import torch

from lightning_modules.data import pad_tails, slice_tensors
from lightning_modules.metrics import RankingAccumulator
from lightning_modules.model_io import load_model
from nightrec.evaluation.gate import read_split
from nightrec.evaluation.sample import eval_sample
from nightrec.layout import ITEMS_FILE, VALID_FILE
from nightrec.schema import ITEM_ID, ITEM_IDX, USER_IDX
from nightrec.sequences.splits import HISTORY, TARGET

REPORTED_SLICES = ("cold_users/", "cold_items/")


def _night_to_model(sequences_dir: Path, model_items: pl.DataFrame) -> np.ndarray:
    """``lookup[night item_idx] -> model item_idx`` (0 where the model does not know the item)."""
    night = read_split(sequences_dir, ITEMS_FILE).select(ITEM_ID, ITEM_IDX)
    known = night.join(model_items.select(ITEM_ID, pl.col(ITEM_IDX).alias("model_idx")), on=ITEM_ID).drop_nulls()
    lookup = np.zeros(int(night[ITEM_IDX].max() or 0) + 1, dtype=np.int64)
    lookup[known[ITEM_IDX].to_numpy()] = known["model_idx"].to_numpy()
    return lookup


def _model_histories(histories: pl.Series, lookup: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded histories in the model's item ids, unknown items dropped: ``(history, lengths)``."""
    lengths = histories.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = lookup[histories.explode().drop_nulls().to_numpy().astype(np.int64)]
    known = flat > 0
    kept = np.bincount(np.repeat(np.arange(len(lengths)), lengths)[known], minlength=len(lengths))
    return pad_tails(flat[known], kept, max(int(kept.max(initial=0)), 1))


@torch.no_grad()
def model_valid_metrics(
    model_dir: Path, sequences_dir: Path, eval_users: int | None = None, batch_size: int = 1024
) -> dict[str, float]:
    """Recall/NDCG/MRR/coverage@10/20 of the model in ``model_dir`` on ``valid.parquet``, and the
    ``cold_users/`` and ``cold_items/`` slices."""
    network, model_items = load_model(Path(model_dir))
    lookup = _night_to_model(sequences_dir, model_items)
    valid = read_split(sequences_dir, VALID_FILE)
    valid = valid[eval_sample(valid.get_column(USER_IDX).to_numpy(), eval_users)]
    history, lengths = _model_histories(valid.get_column(HISTORY), lookup)
    targets = torch.from_numpy(lookup[valid.get_column(TARGET).to_numpy().astype(np.int64)])
    activity, cold = slice_tensors(valid, np.zeros(valid.height, dtype=np.int64))
    ok = (lengths > 0) & (targets > 0)
    usable = torch.nonzero(ok).squeeze(1)
    usable = usable[torch.argsort(lengths[usable], stable=True)]
    metric = RankingAccumulator(network.n_items)
    metric.add_misses(activity[~ok], cold[~ok])  # nothing to score them from: never a hit
    for start in range(0, len(usable), batch_size):
        rows = usable[start : start + batch_size]
        width = int(lengths[rows].max())
        scores = network.scores(history[rows, :width], lengths[rows]).float()
        scores[:, 0] = float("-inf")
        metric.update(scores, targets[rows], activity[rows], cold[rows])
    return {
        name: value for name, value in metric.compute().items() if "/" not in name or name.startswith(REPORTED_SLICES)
    }
