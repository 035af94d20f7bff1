"""What every neural family shares: item embedding -> dropout -> *encoder* -> dropout -> (projection)
-> dot products with the item table.

A family (``lightning_modules.families``) subclasses ``SequenceNetwork`` and writes only its
encoder, ``[B, L, embedding_dim] -> [B, L, hidden_size]``, reading left to right: histories are
right-padded with item 0, so the state at position ``length - 1`` never sees the padding behind
it, and training ignores padded targets. Scoring, evaluation and the LightningModule use only
the methods here.

With ``history_bias`` an item already in the input history gets one learned score offset (a
repeat/explore switch in the spirit of RepeatNet): the data decides whether people come back to
what they had (groceries, replays: positive) or move on (films rated once: strongly negative).
It is part of the model's scores, learned by the same loss; it is not seen-item masking.

With ``item_attributes`` every item embedding, input and scoring alike, is its id row plus the
projection of its attribute vector (``lightning_modules.attributes``); an untied output table gets
the same projection added, so one ``W`` serves both sides.
"""

from typing import Any

import torch
from torch import nn

from lightning_modules.attributes import AttributeEmbedding


class SequenceNetwork(nn.Module):
    """Next-item model; ``user_states @ item_embeddings().T`` are the scores."""

    family = ""
    # Closed-form families (collaborative filtering) are fitted, not trained by gradient descent.
    closed_form = False

    def __init__(
        self,
        n_items: int,
        embedding_dim: int = 64,
        hidden_size: int = 64,
        dropout: float = 0.3,
        hidden_dropout: float = 0.0,
        tie_weights: bool = True,
        projection: bool | None = None,
        item_bias: bool = False,
        history_bias: bool = False,
        item_attributes: bool = False,
        attribute_features: int = 1024,
    ):
        super().__init__()
        if projection is None:
            projection = hidden_size != embedding_dim
        if not projection and hidden_size != embedding_dim:
            raise ValueError(
                f"hidden_size {hidden_size} != embedding_dim {embedding_dim}: scoring needs projection=true"
            )
        self.arch: dict[str, Any] = {
            "family": self.family,
            "n_items": n_items,
            "embedding_dim": embedding_dim,
            "hidden_size": hidden_size,
            "dropout": dropout,
            "hidden_dropout": hidden_dropout,
            "tie_weights": tie_weights,
            "projection": projection,
            "item_bias": item_bias,
            "history_bias": history_bias,
            "item_attributes": item_attributes,
        }
        if item_attributes:  # recorded only when on: older checkpoints stay comparable (check_compatible)
            self.arch["attribute_features"] = attribute_features
        self.n_items = n_items
        self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.input_dropout = nn.Dropout(dropout)
        self.output_dropout = nn.Dropout(hidden_dropout)
        self.projection = nn.Linear(hidden_size, embedding_dim) if projection else None
        self.output_embedding = None if tie_weights else nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        # A per-item score offset (popularity); folded into the dot product as one extra dimension.
        self.bias = nn.Parameter(torch.zeros(n_items + 1)) if item_bias else None
        # One score offset for "this item is already in the input history"; learned, starts neutral.
        self.history_weight = nn.Parameter(torch.zeros(1)) if history_bias else None
        # Rows are empty until set_rows (training) or load_state_dict (a checkpoint) fills them.
        self.attributes = (
            AttributeEmbedding(n_items + 1, attribute_features, embedding_dim) if item_attributes else None
        )

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> "SequenceNetwork":
        return cls(**{k: v for k, v in arch.items() if k != "family"})

    @classmethod
    def common_settings(cls, model_config: Any, n_items: int) -> dict[str, Any]:
        """The ``model`` settings every neural family takes."""
        return {
            "n_items": n_items,
            "embedding_dim": model_config.embedding_dim,
            "hidden_size": model_config.hidden_size,
            "dropout": model_config.dropout,
            "hidden_dropout": model_config.hidden_dropout,
            "tie_weights": model_config.tie_weights,
            "projection": model_config.projection,
            "item_bias": model_config.item_bias,
            "history_bias": model_config.history_bias,
            "item_attributes": model_config.item_attributes,
            "attribute_features": model_config.attribute_features,
        }

    def reset_tables(self) -> None:
        for table in (self.embedding, self.output_embedding):
            if table is not None:
                nn.init.xavier_normal_(table.weight)
                with torch.no_grad():
                    table.weight[0].zero_()

    def encode(self, embedded: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The family's encoder: ``[B, L, embedding_dim]`` (and the item ids ``[B, L]``) -> ``[B, L, hidden]``."""
        raise NotImplementedError

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[...] -> [..., embedding_dim]``: id rows (+ attribute projections)."""
        if self.attributes is None:
            return self.embedding(items)
        return self.embedding(items) + self.attributes.table()[items]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """User state after every position: ``[B, L] -> [B, L, d]`` (d = embedding_dim, + 1 with item_bias)."""
        out = self.output_dropout(self.encode(self.input_dropout(self.embed(items)), items))
        out = self.projection(out) if self.projection is not None else out
        if self.bias is not None:
            out = torch.cat([out, torch.ones_like(out[..., :1])], dim=-1)
        return out

    def user_states(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The state after each user's last real item: ``[B, L]`` right-padded, ``[B]`` -> ``[B, d]``."""
        states = self.forward(histories)
        last = (lengths.clamp(min=1) - 1).to(states.device)
        return states[torch.arange(states.shape[0], device=states.device), last]

    def scores(self, histories: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Full-catalogue scores ``[B, n_items + 1]`` of right-padded histories (column 0 is padding)."""
        scores = self.user_states(histories, lengths) @ self.item_embeddings().T
        if self.history_weight is None:
            return scores
        rows = torch.arange(histories.shape[0], device=histories.device).repeat_interleave(histories.shape[1])
        # Padding only marks column 0, which every caller ignores.
        return self.add_history_bias(scores, rows, histories.reshape(-1))

    def add_history_bias(self, scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``scores`` ``[N, n_items + 1]`` plus the learned offset at every ``(row, item)`` read so far.

        Only the read pairs are touched, each once (no second matrix of catalogue width); without
        gradients ``scores`` is updated in place.
        """
        width = scores.shape[1]
        pairs = torch.unique(rows.to(scores.device) * width + items.to(scores.device))  # each pair once
        rows, items = pairs // width, pairs % width
        bumped = scores[rows, items] + self.history_weight.to(scores.dtype)
        if scores.requires_grad:
            return scores.index_put((rows, items), bumped)  # training: out of place, for autograd
        return scores.index_put_((rows, items), bumped)  # scoring: in place, the caller's own matrix

    def item_embeddings(self) -> torch.Tensor:
        """The scoring table ``[n_items + 1, d]``; row 0 is padding."""
        table = (self.output_embedding if self.output_embedding is not None else self.embedding).weight
        if self.attributes is not None:
            table = table + self.attributes.table()
        if self.bias is None:
            return table
        return torch.cat([table, self.bias.unsqueeze(1)], dim=1)


def prefix_items(inputs: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct ``(row, item)`` pairs, sorted: each kept position (rows numbered in ``inputs[keep]``
    order) with every non-padding item at or before it in its sequence: what the state at that
    position has read. An item read twice is one pair, so an offset added per pair counts once."""
    length = inputs.shape[1]
    row_of = torch.full(inputs.shape, -1, dtype=torch.long, device=inputs.device)
    row_of[keep] = torch.arange(int(keep.sum()), device=inputs.device)
    upto = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
    b, t, s = (keep[:, :, None] & upto[None] & (inputs[:, None, :] > 0)).nonzero(as_tuple=True)
    width = int(inputs.max()) + 1 if inputs.numel() else 1
    cells = torch.unique(row_of[b, t] * width + inputs[b, s])
    return cells // width, cells % width
