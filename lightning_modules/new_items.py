"""Scores of items the model has never seen, from their attributes (``model.item_attributes``).

An item that first appears tonight is in the item table but not in the model's vocabulary, so no
id row scores it; a hybrid model still scores it by the projection of its attribute vector, the
embedding it would have with an id row of zero (``lightning_modules.attributes``).
"""

import json
from pathlib import Path

import polars as pl
import torch

from lightning_modules.attributes import attribute_item_embeddings
from lightning_modules.model_io import load_model
from nightrec.layout import CONFIG_FILE
from nightrec.metadata.features import hashed_vectors
from nightrec.metadata.tables import AttributeTable
from nightrec.schema import ITEM_ID, ITEM_IDX, SCORE, TIMESTAMP, USER_ID


def history_batch(histories: list[list[str]], known: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[users, L]`` model indices and lengths; ids the model lacks are dropped."""
    mapped = [[known[item] for item in history if item in known] for history in histories]
    width = max(1, *(len(h) for h in mapped)) if mapped else 1
    batch = torch.zeros(len(mapped), width, dtype=torch.long)
    for row, history in enumerate(mapped):
        batch[row, : len(history)] = torch.tensor(history, dtype=torch.long)
    return batch, torch.tensor([len(h) for h in mapped], dtype=torch.long)


def numeric_bins(model_dir: Path) -> int:
    """The ``metadata.numeric_bins`` the model's vectors were hashed with (its ``config.json``)."""
    path = Path(model_dir) / CONFIG_FILE
    return json.loads(path.read_text()).get("metadata", {}).get("numeric_bins", 10) if path.is_file() else 10


@torch.no_grad()
def score_new_items(
    model_dir: Path, histories: list[list[str]], item_ids: list[str], item_table: AttributeTable
) -> torch.Tensor:
    """``[users, items]`` scores of ``item_ids`` (external ids, in or out of the vocabulary) for
    users with these ``histories`` (external item ids, oldest first), by attributes alone.

    Each item is scored by its attribute projection, as if its id row were zero: items the model
    knows are scored the same way, so the columns compare with each other (not with full-model
    scores). An item missing from ``item_table`` has a zero vector (a score of 0); a user with no
    item the model knows gets the state of an empty history. The served weights are used.
    """
    served = _served_projection(model_dir, item_ids, item_table)
    if served is None:
        raise ValueError(f"{model_dir}: this model was trained without model.item_attributes")
    network, known, table = served
    return network.user_states(*history_batch(histories, known)) @ table.T


def _served_projection(
    model_dir: Path, item_ids: list[str], item_table: AttributeTable
) -> tuple[torch.nn.Module, dict[str, int], torch.Tensor] | None:
    """(the served network in eval mode, its item id -> index map, the attribute embeddings of
    ``item_ids``); None when the model was trained without attributes (closed-form families too)."""
    network, items = load_model(Path(model_dir), served=True)
    if getattr(network, "attributes", None) is None:
        return None
    network.eval()
    known = dict(zip(items.get_column(ITEM_ID).cast(str).to_list(), items.get_column(ITEM_IDX).to_list(), strict=True))
    vectors = hashed_vectors(item_table, network.attributes.n_features, numeric_bins(model_dir))
    return network, known, attribute_item_embeddings(network, vectors.rows([str(i) for i in item_ids]))


@torch.no_grad()
def new_item_choices(
    model_dir: Path,
    events: pl.DataFrame,
    item_ids: list[str],
    item_table: AttributeTable,
    top: int,
    max_len: int = 50,
    block: int = 4096,
) -> pl.DataFrame | None:
    """(user_id, item_id, score): each user's ``top`` items of ``item_ids`` by the served hybrid
    model (``score_new_items``, users' histories from ``events``, the last ``max_len`` items),
    for ``recommend.new_item_slots``; None when the model was trained without attributes."""
    served = _served_projection(model_dir, item_ids, item_table) if item_ids else None
    if served is None:
        return None
    network, known, table = served
    users = (
        events.select(USER_ID, ITEM_ID, TIMESTAMP)
        .sort(USER_ID, TIMESTAMP, maintain_order=True)
        .group_by(USER_ID, maintain_order=True)
        .agg(pl.col(ITEM_ID).tail(max_len))
    )
    ids, histories = users.get_column(USER_ID), users.get_column(ITEM_ID).to_list()
    take = min(top, len(item_ids))
    frames = []
    for start in range(0, len(histories), block):
        batch, lengths = history_batch(histories[start : start + block], known)
        values, index = (network.user_states(batch, lengths) @ table.T).topk(take, dim=1)
        frames.append(
            pl.DataFrame(
                {
                    USER_ID: ids.slice(start, len(batch)).to_list(),
                    ITEM_ID: [[item_ids[j] for j in row] for row in index.tolist()],
                    SCORE: values.tolist(),
                }
            ).explode(ITEM_ID, SCORE)
        )
    return pl.concat(frames).with_columns(pl.col(SCORE).cast(pl.Float64))
