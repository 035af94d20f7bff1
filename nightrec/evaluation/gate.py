"""The promotion gate's popularity baseline: the list cold users are actually served, judged on
tonight's validation targets with the same rank-to-metric function as the models.

The candidate, the champion and this baseline are measured on the same ``valid.parquet`` with
full-catalogue ranking and no seen-item masking (the protocol of ``metrics.json``); a tie counts
against the target. The served list is the global time-decayed popularity of tonight's clean
events with every held-out (user, item) pair of the validation and test splits removed first, so
the baseline never counts the answers it is asked for.
"""

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nightrec.config import PopularityConfig
from nightrec.errors import NightrecError
from nightrec.evaluation.metrics import KS, metrics_from_ranks, rank_against
from nightrec.evaluation.sample import eval_sample
from nightrec.fallback.popularity import ServedPopularity
from nightrec.layout import ITEMS_FILE, TEST_FILE, USERS_FILE, VALID_FILE
from nightrec.registry import valid_ndcg
from nightrec.schema import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from nightrec.sequences.splits import TARGET, slice_columns


def read_split(sequences_dir: Path, name: str) -> pl.DataFrame:
    path = Path(sequences_dir) / name
    if not path.is_file():
        raise NightrecError(f"{path}: missing (sequence folder incomplete)")
    return pl.read_parquet(path)


def held_out_pairs(sequences_dir: Path) -> pl.DataFrame:
    """Every (user_id, item_id) that is a validation or test target, in external ids."""
    users = read_split(sequences_dir, USERS_FILE).select(USER_IDX, USER_ID)
    items = read_split(sequences_dir, ITEMS_FILE).select(pl.col(ITEM_IDX).alias(TARGET), ITEM_ID)
    targets = [read_split(sequences_dir, name).select(USER_IDX, TARGET) for name in (VALID_FILE, TEST_FILE)]
    return (
        pl.concat([t.cast({USER_IDX: pl.Int64, TARGET: pl.Int64}) for t in targets])
        .join(users.cast({USER_IDX: pl.Int64}), on=USER_IDX)
        .join(items.cast({TARGET: pl.Int64}), on=TARGET)
        .select(USER_ID, ITEM_ID)
        .unique()
    )


def served_popularity_metrics(
    events: pl.DataFrame | pl.LazyFrame,
    sequences_dir: Path,
    run_date: date,
    config: PopularityConfig,
    eval_users: int | None = None,
    ks: tuple[int, ...] = KS,
) -> dict[str, float]:
    """Recall/NDCG/MRR@K of the served popularity list on the validation split of ``sequences_dir``
    (on the ``eval_users`` sample the models are judged on), with every slice of ``slice_masks``."""
    kept = events.lazy().join(held_out_pairs(sequences_dir).lazy(), on=[USER_ID, ITEM_ID], how="anti")
    popularity = ServedPopularity(kept, run_date, config)
    items = read_split(sequences_dir, ITEMS_FILE).sort(ITEM_IDX)
    # column 0 is padding: it never ranks ahead of anything
    scores = np.concatenate([[-np.inf], popularity.item_scores(items.get_column(ITEM_ID).to_list())])
    valid = read_split(sequences_dir, VALID_FILE)
    valid = valid[eval_sample(valid.get_column(USER_IDX).to_numpy(), eval_users)]
    targets = valid.get_column(TARGET).to_numpy().astype(np.int64)
    return metrics_from_ranks(rank_against(scores, targets).tolist(), ks, *slice_columns(valid))


def live_ndcg(metrics: dict[str, Any], promotion: dict[str, Any]) -> float | None:
    """Validation NDCG@10 of the model serving after tonight's gate, on tonight's window."""
    if promotion.get("promoted") and "candidate" in metrics:
        return valid_ndcg(metrics["candidate"])
    if "champion" in metrics:
        return valid_ndcg(metrics["champion"])
    return None


def quality_degraded(metrics: dict[str, Any], promotion: dict[str, Any], behavior: dict[str, Any]) -> str | None:
    """The reason to retrain, when the live model is below the served popularity or the data drifted."""
    reasons = []
    live = live_ndcg(metrics, promotion)
    popularity = metrics.get("popularity", {}).get("ndcg@10")
    if live is not None and popularity is not None and live < popularity:
        reasons.append(f"live model NDCG@10 {live:.4f} is below the popularity baseline {popularity:.4f}")
    if behavior.get("drift"):
        reasons.append(behavior.get("drift_message") or "data drift flagged")
    return "; ".join(reasons) or None
