"""The next-item network: item embedding -> dropout -> RNN/LSTM/GRU -> (projection) -> item dot products.

A plain ``nn.Module`` so that scoring, evaluation and the LightningModule share it. Histories are
right-padded with item 0; a recurrent cell only reads left to right, so the state at position
``length - 1`` never sees the padding behind it, and training ignores padded targets.

With ``history_bias`` an item already in the input history gets one learned score offset (a
repeat/explore switch in the spirit of RepeatNet): the data decides whether people come back to
what they had (groceries, replays: positive) or move on (films rated once: strongly negative).
It is part of the model's scores, learned by the same loss; it is not seen-item masking.
"""

from typing import Any

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class NextItemNetwork(nn.Module):
    """Recurrent next-item model; ``user_states @ item_embeddings().T`` are the scores."""

    def __init__(
        self,
        n_items: int,
        cell: str = "gru",
        embedding_dim: int = 64,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.3,
        hidden_dropout: float = 0.0,
        tie_weights: bool = True,
        projection: bool | None = None,
        item_bias: bool = False,
        history_bias: bool = False,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell '{cell}' (expected one of {', '.join(CELLS)})")
        if projection is None:
            projection = hidden_size != embedding_dim
        if not projection and hidden_size != embedding_dim:
            raise ValueError(
                f"hidden_size {hidden_size} != embedding_dim {embedding_dim}: scoring needs projection=true"
            )
        self.arch: dict[str, Any] = {
            "n_items": n_items,
            "cell": cell,
            "embedding_dim": embedding_dim,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "dropout": dropout,
            "hidden_dropout": hidden_dropout,
            "tie_weights": tie_weights,
            "projection": projection,
            "item_bias": item_bias,
            "history_bias": history_bias,
        }
        self.n_items = n_items
        self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.input_dropout = nn.Dropout(dropout)
        self.rnn = CELLS[cell](embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.output_dropout = nn.Dropout(hidden_dropout)
        self.projection = nn.Linear(hidden_size, embedding_dim) if projection else None
        self.output_embedding = None if tie_weights else nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        # A per-item score offset (popularity); folded into the dot product as one extra dimension.
        self.bias = nn.Parameter(torch.zeros(n_items + 1)) if item_bias else None
        # One score offset for "this item is already in the input history"; learned, starts neutral.
        self.history_weight = nn.Parameter(torch.zeros(1)) if history_bias else None
        self.reset_parameters()

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> "NextItemNetwork":
        return cls(**arch)

    def reset_parameters(self) -> None:
        for table in (self.embedding, self.output_embedding):
            if table is not None:
                nn.init.xavier_normal_(table.weight)
                with torch.no_grad():
                    table.weight[0].zero_()
        for name, param in self.rnn.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(param)
            else:
                nn.init.zeros_(param)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """User state after every position: ``[B, L] -> [B, L, d]`` (d = embedding_dim, + 1 with item_bias)."""
        out, _ = self.rnn(self.input_dropout(self.embedding(items)))
        out = self.output_dropout(out)
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
        table = self.output_embedding if self.output_embedding is not None else self.embedding
        if self.bias is None:
            return table.weight
        return torch.cat([table.weight, self.bias.unsqueeze(1)], dim=1)


def build_network(model_config: Any, n_items: int) -> NextItemNetwork:
    """A network from the ``model`` section of the run config."""
    return NextItemNetwork(
        n_items=n_items,
        cell=model_config.cell,
        embedding_dim=model_config.embedding_dim,
        hidden_size=model_config.hidden_size,
        num_layers=model_config.num_layers,
        dropout=model_config.dropout,
        hidden_dropout=model_config.hidden_dropout,
        tie_weights=model_config.tie_weights,
        projection=model_config.projection,
        item_bias=model_config.item_bias,
        history_bias=model_config.history_bias,
    )


def prefix_items(inputs: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, item)`` pairs: each kept position (rows numbered in ``inputs[keep]`` order) with every
    non-padding item at or before it in its sequence: what the state at that position has read."""
    length = inputs.shape[1]
    row_of = torch.full(inputs.shape, -1, dtype=torch.long, device=inputs.device)
    row_of[keep] = torch.arange(int(keep.sum()), device=inputs.device)
    upto = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
    b, t, s = (keep[:, :, None] & upto[None] & (inputs[:, None, :] > 0)).nonzero(as_tuple=True)
    return row_of[b, t], inputs[b, s]
