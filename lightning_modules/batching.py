"""Index batches for one rank: plain shuffled batches, or length-bucketed batches of equal cost.

Histories are right-padded, so a batch of windows costs its size times its longest window. On
short histories (8 events per user is common in shops) fixed-size batches of full-width windows
pay mostly for padding. ``LengthBuckets`` sorts windows by length (random order among equal
lengths, new every epoch), fills each batch up to a budget of ``batch_size x width`` positions,
and lets the dataset cut every batch to its longest window: the cost of an epoch then follows the
real positions. Every rank builds the same global list of batches from ``(seed, epoch)`` and takes
an equal, disjoint share of it, so DDP ranks always run the same number of steps.
"""

import numpy as np
import torch


class BatchSampler:
    """Index batches for one rank: shuffled (seed + epoch) and cut to an equal, disjoint shard per rank.

    Training drops the few rows that do not divide evenly over the ranks (different ones each epoch),
    so no row is duplicated; evaluation gives each rank a contiguous slice and keeps every row.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        order: torch.Tensor | None = None,
    ):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world, self.epoch = rank, world, 0
        # Evaluation may visit rows in a given order (by history length, so a batch cuts its padding);
        # the metrics are sums, so the order does not change them.
        self.order = order

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            per_rank = self.n // self.world
            return torch.randperm(self.n, generator=gen)[self.rank :: self.world][:per_rank]
        bounds = [self.n * r // self.world for r in range(self.world + 1)]
        rows = torch.arange(bounds[self.rank], bounds[self.rank + 1])
        return rows if self.order is None else self.order[rows]

    def __iter__(self):
        yield from torch.split(self.indices(), self.batch_size)

    def __len__(self) -> int:
        count = self.n // self.world if self.shuffle else len(self.indices())
        return -(-count // self.batch_size)


def bucket_bounds(sorted_lengths: np.ndarray, budget: int) -> np.ndarray:
    """Batch boundaries over windows sorted by length: each batch's ``size x longest`` stays within
    ``budget`` positions (a single window longer than the budget gets a batch of its own)."""
    bounds, start = [0], 0
    n = len(sorted_lengths)
    while start < n:
        # size x (length of the last, longest window) grows with size: the fitting sizes are a prefix
        cap = max(1, budget // max(int(sorted_lengths[start]), 1))
        window = sorted_lengths[start : start + cap]
        fits = np.arange(1, len(window) + 1) * window <= budget
        start += max(1, int(fits.sum()))
        bounds.append(start)
    return np.asarray(bounds)


class LengthBuckets:
    """Training batches of windows of similar length, about ``budget`` positions each (see module doc)."""

    def __init__(self, lengths: np.ndarray, budget: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.budget, self.seed, self.rank, self.world, self.epoch = budget, seed, rank, world, 0
        # The boundaries depend only on the multiset of lengths, so every epoch has as many batches.
        self.bounds = bucket_bounds(np.sort(self.lengths), budget)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[torch.Tensor]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = np.lexsort((rng.random(len(self.lengths)), self.lengths))
        batches = [order[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]
        shuffled = rng.permutation(len(batches))
        per_rank = len(batches) // self.world
        mine = shuffled[self.rank :: self.world][:per_rank]
        return [torch.from_numpy(batches[i]) for i in mine]

    def __iter__(self):
        yield from self.batches()

    def __len__(self) -> int:
        return (len(self.bounds) - 1) // self.world
