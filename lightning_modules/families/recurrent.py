"""The recurrent family: RNN, LSTM and GRU cells over the item embeddings (GRU4Rec's shape)."""

from typing import Any

from torch import nn

from lightning_modules.network import SequenceNetwork

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNetwork(SequenceNetwork):
    """``num_layers`` stacked cells of one kind; the state at each position has read only its prefix."""

    def __init__(self, n_items: int, family: str = "gru", num_layers: int = 1, **common: Any):
        if family not in CELLS:
            raise ValueError(f"unknown recurrent cell '{family}' (expected one of {', '.join(CELLS)})")
        self.family = family
        super().__init__(n_items, **common)
        self.arch["num_layers"] = num_layers
        self.rnn = CELLS[family](self.arch["embedding_dim"], self.arch["hidden_size"], num_layers, batch_first=True)
        self.reset_tables()
        for name, param in self.rnn.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(param)
            else:
                nn.init.zeros_(param)

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> "RecurrentNetwork":
        return cls(**arch)

    @classmethod
    def from_config(cls, model_config: Any, n_items: int, max_len: int = 50) -> "RecurrentNetwork":
        return cls(
            family=model_config.family,
            num_layers=model_config.num_layers,
            **cls.common_settings(model_config, n_items),
        )

    def encode(self, embedded, items):
        return self.rnn(embedded)[0]
