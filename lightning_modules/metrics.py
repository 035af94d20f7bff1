"""Full-ranking next-item metrics: Recall@K (= HR@K with one target), NDCG@K, MRR@K, coverage@K.

Ties count against the target: its rank is the number of *other* items scoring at least as high,
so a constant scorer never looks good. Masked items (padding, seen items) score ``-inf``; a masked
target therefore misses, as it would in the published list.

Everything is accumulated as integer counts (targets at each rank below max K, per slice, items
shown per K) in torchmetrics sum states, so sharded evaluation summed across DDP ranks equals one
process exactly; ``nightrec.evaluation.metrics.ranking_metrics`` turns the counts into metrics. The
slices (activity, cold users, cold items) are ``nightrec.evaluation.metrics.slice_masks``'.
"""

import torch
from torchmetrics import Metric

from nightrec.evaluation.metrics import KS, SLICES, coverage, ranking_metrics, slice_masks, slice_metrics, slice_names

MISS = 2**62


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, top_values: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all columns of ``scores``; ties rank above the target.

    ``top_values`` are each row's ``depth + 1`` highest scores (``torch.topk``): a rank below
    ``depth`` is exact, any deeper one reads ``depth``, so no full-width pass is needed. A masked
    target (score -inf) gets a rank beyond any cut-off: it can never be recommended.
    """
    target_scores = scores.gather(1, targets.view(-1, 1).long())
    ranks = (top_values >= target_scores).sum(dim=1) - 1
    return ranks.masked_fill(target_scores.squeeze(1) == float("-inf"), MISS)


def mask_items(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Set ``scores[rows, cols]`` to -inf in place (seen items) and return ``scores``."""
    scores[rows.long(), cols.long()] = float("-inf")
    return scores


class RankingAccumulator(Metric):
    """Integer counts behind the metrics of one split and one protocol (masked or not).

    Both states are sums (``dist_reduce_fx="sum"``): ``compute`` gathers them over DDP ranks, so
    every rank reports the totals. The states stay on the CPU, where the counts are made.
    """

    full_state_update = False

    def __init__(self, n_items: int, ks: tuple[int, ...] = KS, slices=SLICES):
        super().__init__(compute_on_cpu=True)
        self.n_items = n_items
        self.ks = tuple(sorted(ks))
        self.max_k = self.ks[-1]
        self.slices = slices
        self.names = slice_names(slices)
        # row 0 of hits: all users; row s + 1: slice s of ``names``. Last column: users counted.
        self.add_state("hits", torch.zeros(len(self.names) + 1, self.max_k + 1, dtype=torch.long), dist_reduce_fx="sum")
        # how many lists showed each item at each K (read as shown / not shown)
        self.add_state("shown", torch.zeros(len(self.ks), n_items + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        activity: torch.Tensor | None = None,
        cold: torch.Tensor | None = None,
    ) -> None:
        """Add a batch: ``scores [B, n_items + 1]`` (masked entries -inf), ``targets [B]``, the
        users' training events ``activity [B]`` and whether each target is a ``cold`` item ``[B]``."""
        scores = scores.detach().float()
        top = torch.topk(scores, min(self.max_k + 1, scores.shape[1]), dim=1)
        ranks = target_ranks(scores, targets.to(scores.device), top.values).cpu()
        in_top = ranks < self.max_k
        for row, members in enumerate(self._groups(len(ranks), activity, cold)):
            self.hits[row, : self.max_k] += torch.bincount(ranks[members & in_top], minlength=self.max_k)
            self.hits[row, self.max_k] += int(members.sum())
        indices, shown = top.indices[:, : self.max_k].cpu(), (top.values[:, : self.max_k] > float("-inf")).cpu()
        for i, k in enumerate(self.ks):
            self.shown[i].index_fill_(0, indices[:, :k][shown[:, :k]], 1)

    def add_misses(self, activity: torch.Tensor, cold: torch.Tensor | None = None) -> None:
        """Count users whose target cannot be ranked (nothing to score them from): never a hit.
        One per entry of ``activity`` (their training events), in their slices."""
        for row, members in enumerate(self._groups(len(activity), activity, cold)):
            self.hits[row, self.max_k] += int(members.sum())
        self._computed = None  # states changed outside ``update``: compute() must not answer from its cache

    def _groups(self, n: int, activity: torch.Tensor | None, cold: torch.Tensor | None) -> list[torch.Tensor]:
        """Row masks: everyone, then each slice of ``names``."""
        events = torch.zeros(n, dtype=torch.long) if activity is None else activity.cpu()
        masks = slice_masks(events.numpy(), None if cold is None else cold.cpu().numpy(), self.slices)
        return [torch.ones(n, dtype=torch.bool)] + [torch.from_numpy(masks[name]) for name in self.names]

    def compute(self) -> dict[str, float]:
        """``recall@K, ndcg@K, mrr@K, coverage@K`` and ``users``, plus ``<slice>/...`` per slice
        (``cold_items/targets`` counts that slice's targets)."""
        out = ranking_metrics(self.hits[0, : self.max_k].tolist(), int(self.hits[0, self.max_k]), self.ks)
        for i, k in enumerate(self.ks):
            out[f"coverage@{k}"] = coverage(int((self.shown[i, 1:] > 0).sum()), self.n_items)
        for s, name in enumerate(self.names, start=1):
            out.update(slice_metrics(self.hits[s, : self.max_k].tolist(), int(self.hits[s, self.max_k]), self.ks, name))
        return out


class SplitMetrics:
    """Both protocols of one split: ``unmasked`` (RecBole's) and ``masked`` (seen items excluded)."""

    def __init__(self, n_items: int):
        self.unmasked = RankingAccumulator(n_items)
        self.masked = RankingAccumulator(n_items)

    def reset(self) -> None:
        self.unmasked.reset()
        self.masked.reset()

    def update(self, scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Rank ``batch['target']`` in ``scores`` both ways; ``scores`` is modified in place."""
        scores[:, 0] = float("-inf")
        cold = batch.get("cold")  # absent from sequences folders written before the cold slices
        self.unmasked.update(scores, batch["target"], batch["activity"], cold)
        mask_items(scores, batch["seen_rows"].to(scores.device), batch["seen_cols"].to(scores.device))
        self.masked.update(scores, batch["target"], batch["activity"], cold)

    def compute(self) -> dict[str, float]:
        """Unmasked metrics under their plain names, masked ones prefixed ``masked/``."""
        out = self.unmasked.compute()
        out.update({f"masked/{key}": value for key, value in self.masked.compute().items()})
        return out
