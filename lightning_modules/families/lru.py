"""The linear-recurrent-unit family: LRURec (Yue et al., WSDM 2024) over the item embeddings.

Each block is pre-norm: ``x + drop(LRU(LN(x)))``, then ``x + drop(FFN(LN(x)))``. The LRU
(Orvieto et al., 2023) is a diagonal complex linear recurrence
``h_t = lambda * h_{t-1} + gamma * (B u_t)``, ``y_t = Re(C h_t) + D * u_t`` with
``lambda = exp(-exp(nu) + i exp(theta))`` and ``gamma = sqrt(1 - |lambda|^2)``.

Because the recurrence is linear and time-invariant, training runs it as a parallel scan in
ceil(log2 L) doubling steps; ``step`` runs the same recurrence one item at a time (the state a
scorer can carry forward). Both read left to right only, so right-padding never reaches a state.

Complex numbers are kept as (real, imaginary) pairs of real tensors: on CPU complex64 autograd
measured no faster, and real parameters keep AdamW, the weight average, DDP, checkpoints and
bf16 autocast free of complex dtypes.
"""

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.network import SequenceNetwork

# Decay radii |lambda| are drawn uniformly on the ring [R_MIN, R_MAX] (by area). Histories are
# short (max_len 50 by default): 0.99 remembers ~100 items, 0.8 about the last 5, so the ring spans
# long-term taste through the latest few items. Orvieto's 0.9..0.999 targets thousands of steps.
R_MIN, R_MAX = 0.8, 0.99
MAX_PHASE = 2 * math.pi
FFN_MULT = 4


def complex_scan(
    lam_re: torch.Tensor, lam_im: torch.Tensor, x_re: torch.Tensor, x_im: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All states of ``h_t = lambda * h_{t-1} + x_t`` (``h_{-1} = 0``) over dim 1, by doubling.

    ``lambda`` is ``[N]``, ``x`` is ``[B, L, N]``, each complex as two real tensors. After the step
    with offset ``k``, ``h_t`` holds ``sum_{j < 2k} lambda^j x_{t-j}`` (Hillis-Steele); since lambda
    is the same at every position, the carried factor is just ``lambda^k``.
    """
    h_re, h_im, p_re, p_im = x_re, x_im, lam_re, lam_im
    k = 1
    while k < x_re.shape[1]:
        # h shifted k positions later, zeros in front: the causal neighbour, never a later item.
        s_re, s_im = (F.pad(h[:, :-k], (0, 0, k, 0)) for h in (h_re, h_im))
        h_re, h_im = h_re + p_re * s_re - p_im * s_im, h_im + p_re * s_im + p_im * s_re
        p_re, p_im = p_re * p_re - p_im * p_im, 2 * p_re * p_im
        k *= 2
    return h_re, h_im


class LRULayer(nn.Module):
    """One LRU over ``[B, L, width]`` inputs with a complex state of ``state_size`` channels."""

    def __init__(self, width: int, state_size: int, r_min: float, r_max: float, max_phase: float):
        super().__init__()
        self.state_size = state_size
        u1, u2 = torch.rand(state_size), torch.rand(state_size).clamp(min=1e-4)
        radius_sq = u1 * (r_max**2 - r_min**2) + r_min**2
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(radius_sq)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        # B maps to [real | imaginary] state channels, C reads them back: Re(C h) = C_re h_re - C_im h_im,
        # the sign folded into C's imaginary half. Scales as Orvieto's, so y has unit variance at init.
        self.B = nn.Linear(width, 2 * state_size, bias=False)
        self.C = nn.Linear(2 * state_size, width, bias=False)
        self.D = nn.Parameter(torch.randn(width))
        nn.init.normal_(self.B.weight, std=1 / math.sqrt(2 * width))
        nn.init.normal_(self.C.weight, std=1 / math.sqrt(state_size))

    def eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``lambda`` as ``(real, imaginary)``, each ``[state_size]``."""
        modulus, phase = torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log)
        return modulus * torch.cos(phase), modulus * torch.sin(phase)

    def inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``gamma * (B u)`` as ``(real, imaginary)``; float32 even under autocast (decay powers need it)."""
        # 1 - |lambda|^2 = -expm1(-2 exp(nu)): exact near |lambda| = 1, where 1 - x would cancel.
        gamma = torch.sqrt(-torch.expm1(-2 * torch.exp(self.nu_log)))
        bu = self.B(u).float() * gamma.repeat(2)
        return bu[..., : self.state_size], bu[..., self.state_size :]

    def readout(self, h_re: torch.Tensor, h_im: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.C(torch.cat([h_re, h_im], dim=-1).to(u.dtype)) + self.D * u

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``[B, L, width] -> [B, L, width]``, every position by the parallel scan."""
        h_re, h_im = complex_scan(*self.eigenvalues(), *self.inputs(u))
        return self.readout(h_re, h_im, u)

    def step(self, state: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One position: ``state`` ``[B, 2 * state_size]`` (real | imaginary), ``u`` ``[B, width]``."""
        lam_re, lam_im = self.eigenvalues()
        x_re, x_im = self.inputs(u)
        s_re, s_im = state[..., : self.state_size], state[..., self.state_size :]
        h_re, h_im = lam_re * s_re - lam_im * s_im + x_re, lam_re * s_im + lam_im * s_re + x_im
        return torch.cat([h_re, h_im], dim=-1), self.readout(h_re, h_im, u)


class LRUBlock(nn.Module):
    """Pre-norm residual block: LRU sub-layer, then a position-wise GELU feed-forward."""

    def __init__(self, width: int, state_size: int, dropout: float, **ring: float):
        super().__init__()
        self.norm, self.ffn_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.lru = LRULayer(width, state_size, **ring)
        self.ffn = nn.Sequential(
            nn.Linear(width, FFN_MULT * width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(FFN_MULT * width, width),
        )
        self.dropout = nn.Dropout(dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.ffn(self.ffn_norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(x + self.dropout(self.lru(self.norm(x))))

    def step(self, state: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state, y = self.lru.step(state, self.norm(x))
        return state, self.feed_forward(x + self.dropout(y))


class LRUNetwork(SequenceNetwork):
    """``num_layers`` LRU blocks at ``hidden_size`` width (an input map when the embedding differs)."""

    family = "lru"

    def __init__(
        self,
        n_items: int,
        num_layers: int = 1,
        state_size: int | None = None,
        r_min: float = R_MIN,
        r_max: float = R_MAX,
        max_phase: float = MAX_PHASE,
        **common: Any,
    ):
        super().__init__(n_items, **common)
        if not 0 <= r_min < r_max < 1:
            raise ValueError(f"lru: need 0 <= r_min < r_max < 1, got {r_min}, {r_max}")
        hidden, embedding = self.arch["hidden_size"], self.arch["embedding_dim"]
        state_size = state_size or hidden
        self.arch.update(num_layers=num_layers, state_size=state_size, r_min=r_min, r_max=r_max, max_phase=max_phase)
        self.input_map = nn.Linear(embedding, hidden) if embedding != hidden else nn.Identity()
        ring = {"r_min": r_min, "r_max": r_max, "max_phase": max_phase}
        dropout = self.arch["hidden_dropout"]
        self.blocks = nn.ModuleList(LRUBlock(hidden, state_size, dropout, **ring) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden)
        self.reset_tables()

    @classmethod
    def from_config(cls, model_config: Any, n_items: int, max_len: int = 50) -> "LRUNetwork":
        return cls(num_layers=model_config.num_layers, **cls.common_settings(model_config, n_items))

    def encode(self, embedded: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        x = self.input_map(embedded)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        """The state before any item: zeros, ``[batch, 2 * state_size]`` per block."""
        weight = self.embedding.weight
        return [weight.new_zeros(batch, 2 * self.arch["state_size"]) for _ in self.blocks]

    def step(self, state: list[torch.Tensor], items: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Read one more item per user: ``(state, items [B]) -> (state, encoded [B, hidden_size])``.

        ``encoded`` equals ``encode`` at that position of the same history: a scorer can carry
        ``state`` forward and read only new items (past ``max_len`` it then remembers more than
        training's windows ever showed, so that is a choice to measure, not a free equivalence).
        """
        x = self.input_map(self.input_dropout(self.embed(items)))
        new_state = []
        for block, block_state in zip(self.blocks, state, strict=True):
            block_state, x = block.step(block_state, x)
            new_state.append(block_state)
        return new_state, self.final_norm(x)
