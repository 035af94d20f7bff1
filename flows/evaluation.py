"""Validation NDCG@10 on one night's held-out window, for the promotion gate and the report.

The champion and the popularity baseline are measured on tonight's ``valid.parquet`` so that
a candidate trained tonight is compared with them on the same targets. Full-catalogue ranking,
no seen-item masking (the protocol of ``metrics.json``); a tie counts against the target.
"""

import bisect
import math
from pathlib import Path

import polars as pl

from nightrec.errors import NightrecError
from nightrec.layout import ITEMS_FILE, TRAIN_FILE, VALID_FILE
from nightrec.schema import ITEM_ID, ITEM_IDX

K = 10


def _ndcg_from_ranks(ranks: list[float], k: int) -> float:
    if not ranks:
        return 0.0
    return sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / len(ranks)


def _read(sequences_dir: Path, name: str) -> pl.DataFrame:
    path = Path(sequences_dir) / name
    if not path.is_file():
        raise NightrecError(f"{path}: missing (sequence folder incomplete)")
    return pl.read_parquet(path)


def popularity_valid_metrics(sequences_dir: Path, k: int = K) -> dict[str, float]:
    """NDCG@k and Recall@k of "most interactions in the training sequences" on the validation split."""
    n_items = _read(sequences_dir, ITEMS_FILE).height
    counts = _read(sequences_dir, TRAIN_FILE).select(pl.col("items").explode().alias(ITEM_IDX)).group_by(ITEM_IDX).len()
    valid = _read(sequences_dir, VALID_FILE)
    if valid.is_empty():
        return {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, "users": 0}
    count_of = dict(zip(counts[ITEM_IDX].to_list(), counts["len"].to_list(), strict=True))
    all_counts = sorted(count_of.values())
    zeros = n_items - len(all_counts)
    ranks = []
    for target in valid["target"].to_list():
        c = count_of.get(target, 0)
        greater = len(all_counts) - bisect.bisect_right(all_counts, c)
        ties = (bisect.bisect_right(all_counts, c) - bisect.bisect_left(all_counts, c)) + (zeros if c == 0 else 0)
        ranks.append(greater + max(ties, 1))  # ties count against the target: every tied item ranks ahead
    return {
        f"ndcg@{k}": _ndcg_from_ranks(ranks, k),
        f"recall@{k}": sum(r <= k for r in ranks) / len(ranks),
        "users": len(ranks),
    }


def model_valid_metrics(model_dir: Path, sequences_dir: Path, k: int = K, chunk_size: int = 2048) -> dict[str, float]:
    """NDCG@k and Recall@k of the model in ``model_dir`` on the validation split of ``sequences_dir``.

    Items are matched by external id, so a model trained on an older vocabulary is judged
    fairly: an item it has never seen is dropped from histories and counts as a miss as a target.
    """
    import torch

    from lightning_modules.model_io import load_model

    network, model_items = load_model(Path(model_dir))
    network.eval()
    night_items = _read(sequences_dir, ITEMS_FILE).select(ITEM_ID, ITEM_IDX)
    mapping = night_items.join(model_items.select(ITEM_ID, pl.col(ITEM_IDX).alias("model_idx")), on=ITEM_ID, how="left")
    lookup = torch.zeros(int(night_items[ITEM_IDX].max() or 0) + 1, dtype=torch.long)
    known = mapping.drop_nulls("model_idx")
    lookup[torch.tensor(known[ITEM_IDX].to_list(), dtype=torch.long)] = torch.tensor(
        known["model_idx"].to_list(), dtype=torch.long
    )
    valid = _read(sequences_dir, VALID_FILE)
    ranks: list[float] = []
    with torch.no_grad():
        for start in range(0, valid.height, chunk_size):
            part = valid.slice(start, chunk_size)
            histories = [lookup[torch.tensor(h, dtype=torch.long)] for h in part["history"].to_list()]
            histories = [h[h > 0] for h in histories]
            targets = lookup[torch.tensor(part["target"].to_list(), dtype=torch.long)]
            usable = [i for i, h in enumerate(histories) if len(h) > 0 and targets[i] > 0]
            ranks.extend([math.inf] * (part.height - len(usable)))
            if not usable:
                continue
            lengths = torch.tensor([len(histories[i]) for i in usable])
            padded = torch.zeros(len(usable), int(lengths.max()), dtype=torch.long)
            for row, i in enumerate(usable):
                padded[row, : lengths[row]] = histories[i]
            scores = network.scores(padded, lengths)
            scores[:, 0] = -math.inf
            target_scores = scores.gather(1, targets[usable].unsqueeze(1))
            # ties count against the target: every other item scoring at least as high ranks ahead
            rank = (scores >= target_scores).sum(dim=1)
            ranks.extend(rank.tolist())
    return {
        f"ndcg@{k}": _ndcg_from_ranks(ranks, k),
        f"recall@{k}": (sum(r <= k for r in ranks) / len(ranks)) if ranks else 0.0,
        "users": len(ranks),
    }
