"""Hybrid item embeddings: a learned linear projection of each item's hashed attribute vector.

With ``model.item_attributes`` an item's embedding is ``id_embedding[i] + W @ x_i``, where ``x_i``
is the item's hashed attribute vector (``nightrec.metadata.features.hashed_vectors``, L2 rows of
``model.attribute_features`` columns). Hashing has no fitted state, so ``W`` learned on one night
reads the next night's vectors the same way, and an item with attributes but no interactions
(or outside the vocabulary altogether: ``attribute_item_embeddings``) still gets an embedding.

The vectors are kept as a CSR matrix in three buffers (``indptr``, ``indices``, ``values``) and
projected with ``embedding_bag``: memory grows with the nonzeros (tens per item), not with
``items x attribute_features`` as a dense buffer would (100k items x 1024 floats is 400 MB).
The buffers travel in the checkpoint, so a model folder still loads on its own; their sizes
change every night, so loading resizes them to the checkpoint's.
"""

from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from nightrec.errors import ConfigError
from nightrec.schema import ITEM_ID, ITEM_IDX

# The buffers that hold the vocabulary's vectors: tonight's, never copied by a warm start.
ROW_BUFFERS = ("indptr", "indices", "values")


class AttributeEmbedding(nn.Module):
    """``n_rows`` sparse attribute rows and the projection ``W`` (``[n_features, dim]``) of them."""

    def __init__(self, n_rows: int, n_features: int, dim: int):
        super().__init__()
        self.n_features = n_features
        self.weight = nn.Parameter(torch.empty(n_features, dim))
        # Each item's vector has unit norm, so with this scale a projection starts about as large
        # as one row of a xavier-initialised id table.
        nn.init.normal_(self.weight, std=(2 / (n_rows + dim)) ** 0.5)
        self.register_buffer("indptr", torch.zeros(n_rows + 1, dtype=torch.long))
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("values", torch.zeros(0))

    def set_rows(self, rows: sparse.csr_matrix) -> None:
        """Use ``rows`` (one per vocabulary row, padding included) as the attribute vectors."""
        if rows.shape != (len(self.indptr) - 1, self.n_features):
            raise ValueError(f"attribute rows {rows.shape} != ({len(self.indptr) - 1}, {self.n_features})")
        indptr, indices, values = csr_tensors(rows)
        self.indptr, self.indices, self.values = (t.to(self.weight.device) for t in (indptr, indices, values))

    def table(self) -> torch.Tensor:
        """``[n_rows, dim]``: every row's projection (rows without attributes are zero)."""
        return project(self.weight, self.indptr, self.indices, self.values)

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:
        # The number of nonzeros is the checkpoint's own; take its sizes before the copy.
        for name in ROW_BUFFERS:
            if (key := prefix + name) in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key], device=self.weight.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def csr_tensors(rows: sparse.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(indptr, indices, values)`` of a scipy CSR matrix as int64/int64/float32 tensors."""
    rows = sparse.csr_matrix(rows)
    return (
        torch.from_numpy(rows.indptr.astype(np.int64)),
        torch.from_numpy(rows.indices.astype(np.int64)),
        torch.from_numpy(rows.data.astype(np.float32)),
    )


def project(weight: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``X @ weight`` for the CSR matrix ``X`` given by its three arrays: ``[len(indptr) - 1, dim]``."""
    if indices.numel() == 0:  # embedding_bag needs at least one index
        return weight.new_zeros(len(indptr) - 1, weight.shape[1])
    return F.embedding_bag(
        indices, weight, indptr, mode="sum", per_sample_weights=values.to(weight.dtype), include_last_offset=True
    )


def attribute_item_embeddings(network: nn.Module, rows: sparse.csr_matrix) -> torch.Tensor:
    """The embeddings of items given only by their attribute vectors ``rows`` (``[n, features]``).

    These are what ``network.item_embeddings()`` holds for an item whose id row is zero: score
    items outside the vocabulary with ``user_states @ attribute_item_embeddings(...).T``. With
    ``item_bias`` the extra column is 0, the bias of an item never trained.
    """
    attributes = getattr(network, "attributes", None)
    if attributes is None:
        raise ValueError("this model was trained without model.item_attributes")
    if rows.shape[1] != attributes.n_features:
        raise ValueError(f"attribute rows have {rows.shape[1]} features, the model {attributes.n_features}")
    weight = attributes.weight
    out = project(weight, *(t.to(weight.device) for t in csr_tensors(rows)))
    if getattr(network, "bias", None) is not None:
        out = torch.cat([out, out.new_zeros(out.shape[0], 1)], dim=1)
    return out


def vocabulary_rows(config: Any, items: pl.DataFrame) -> sparse.csr_matrix:
    """Tonight's hashed attribute rows of a vocabulary (``item_id``, ``item_idx`` 1..n), row 0 zero.

    ``config`` is the run config: ``metadata`` names the item table, ``model.attribute_features``
    the hashing width. Items the table lacks get zero rows (their id embedding alone).
    """
    from nightrec.metadata.features import hashed_vectors
    from nightrec.metadata.tables import read_item_table

    table = read_item_table(config.metadata)
    if table is None:
        raise ConfigError("model.item_attributes needs metadata.items_file (the item attribute table)")
    vectors = hashed_vectors(table, config.model.attribute_features, config.metadata.numeric_bins)
    ordered = items.sort(ITEM_IDX).get_column(ITEM_ID).cast(pl.String).to_list()
    return sparse.vstack([sparse.csr_matrix((1, config.model.attribute_features)), vectors.rows(ordered)]).tocsr()
