"""A model folder judged on a sequences folder's validation split: the promotion gate's view of
the champion on tonight's window (the candidate's own numbers come from its ``metrics.json``).

Full-catalogue ranking without seen-item masking, counted by the same ``RankingAccumulator`` the
trainer validates with. Items are matched by external id, so a model trained on an older
vocabulary is judged fairly: an item it has never seen is dropped from histories and counts as a
miss as a target, and so does a user left with an empty history.
"""

from pathlib import Path

import polars as pl
import torch

from lightning_modules.metrics import RankingAccumulator
from lightning_modules.model_io import load_model
from nightrec.evaluation.gate import read_split
from nightrec.layout import ITEMS_FILE, VALID_FILE
from nightrec.schema import ITEM_ID, ITEM_IDX
from nightrec.sequences.splits import HISTORY, TARGET


def _night_to_model(sequences_dir: Path, model_items: pl.DataFrame) -> torch.Tensor:
    """``lookup[night item_idx] -> model item_idx`` (0 where the model does not know the item)."""
    night = read_split(sequences_dir, ITEMS_FILE).select(ITEM_ID, ITEM_IDX)
    known = night.join(model_items.select(ITEM_ID, pl.col(ITEM_IDX).alias("model_idx")), on=ITEM_ID).drop_nulls()
    lookup = torch.zeros(int(night[ITEM_IDX].max() or 0) + 1, dtype=torch.long)
    lookup[torch.tensor(known[ITEM_IDX].to_list(), dtype=torch.long)] = torch.tensor(
        known["model_idx"].to_list(), dtype=torch.long
    )
    return lookup


@torch.no_grad()
def model_valid_metrics(model_dir: Path, sequences_dir: Path, chunk_size: int = 2048) -> dict[str, float]:
    """Recall/NDCG/MRR/coverage@10/20 of the model in ``model_dir`` on ``valid.parquet``."""
    network, model_items = load_model(Path(model_dir))
    network.eval()
    lookup = _night_to_model(sequences_dir, model_items)
    valid = read_split(sequences_dir, VALID_FILE)
    metric = RankingAccumulator(network.n_items)
    for start in range(0, valid.height, chunk_size):
        part = valid.slice(start, chunk_size)
        histories = [lookup[torch.tensor(h, dtype=torch.long)] for h in part[HISTORY].to_list()]
        histories = [h[h > 0] for h in histories]
        targets = lookup[torch.tensor(part[TARGET].to_list(), dtype=torch.long)]
        usable = [i for i, h in enumerate(histories) if len(h) > 0 and targets[i] > 0]
        # a row that cannot be scored keeps -inf everywhere: its target misses and nothing is shown
        scores = torch.full((part.height, network.n_items + 1), float("-inf"))
        if usable:
            lengths = torch.tensor([len(histories[i]) for i in usable])
            padded = torch.zeros(len(usable), int(lengths.max()), dtype=torch.long)
            for row, i in enumerate(usable):
                padded[row, : lengths[row]] = histories[i]
            scores[usable] = network.scores(padded, lengths).float()
        scores[:, 0] = float("-inf")
        metric.update(scores, targets)
    return {name: value for name, value in metric.compute().items() if "/" not in name}
