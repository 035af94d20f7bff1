"""The LightningModule: next-item loss at every position, full-ranking validation and test.

The network is injected; the module only adds the objective, the optimiser and the metric
bookkeeping. Validation metrics are integer counts all-reduced over ranks (see ``metrics``), so
each rank logs the same exact value; ``history`` keeps them per epoch and travels in checkpoints.
"""

import time
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lightning_modules.data import expand_ranges
from lightning_modules.metrics import SplitMetrics
from lightning_modules.network import SequenceNetwork, prefix_items
from nightrec.config import ModelConfig, TrainConfig

MONITOR = "valid/ndcg@10"


def matching_slots(values: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(i, slot)`` with ``negatives[slot] == values[i]``; negatives may repeat, so match ranges."""
    ordered, order = negatives.sort()
    lo = torch.searchsorted(ordered, values)
    i, at = expand_ranges(lo, torch.searchsorted(ordered, values, right=True) - lo)
    return i, order[at]


def sampled_seen(
    seen: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """What the rows have read among their candidates: a ``[N]`` indicator for each row's target,
    and the ``(row, slot)`` cells of the shared negatives (distinct when ``seen``'s pairs are)."""
    rows, items = seen
    pos = torch.zeros(len(targets), device=targets.device)
    pos[rows[items == targets[rows]]] = 1.0
    pair, slot = matching_slots(items, negatives)
    return pos, (rows[pair], slot)


class NextItemModule(L.LightningModule):
    """Trains a ``SequenceNetwork`` of any family with full or sampled softmax; evaluates by full ranking."""

    def __init__(
        self, network: SequenceNetwork, model: ModelConfig, train: TrainConfig, item_counts: list[int] | None = None
    ):
        super().__init__()
        self.network = network
        config = {"model": model.model_dump(mode="json"), "train": train.model_dump(mode="json")}
        self.save_hyperparameters({"arch": network.arch, "config": config})
        self.model_cfg, self.train_cfg = model, train
        # loss=auto resolves here, from the catalogue size; fit() prints and records the choice.
        self.objective, self.objective_reason = model.objective(network.n_items)
        counts = torch.tensor([0, *(item_counts or [1] * network.n_items)], dtype=torch.float)
        self.register_buffer("log_q", torch.log(counts / counts.sum()).clamp(min=-1e4), persistent=False)
        self.metrics = {"valid": SplitMetrics(network.n_items), "test": SplitMetrics(network.n_items)}
        self.history: list[dict[str, Any]] = []
        self.test_results: dict[str, float] = {}
        self._loss_sum = torch.zeros(2, dtype=torch.float64)
        self._epoch_started = 0.0

    def on_train_epoch_start(self) -> None:
        # Dropout masks depend only on (seed, epoch, rank), so a resumed run draws the same ones.
        torch.manual_seed(self.train_cfg.seed + 1_000_003 * self.current_epoch + self.global_rank)
        self._loss_sum.zero_()
        self._epoch_started = time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        items = batch["items"]
        inputs, targets = items[:, :-1], items[:, 1:]
        hidden = self.network(inputs)
        keep = targets > 0
        soft = None
        if "teacher_items" in batch:  # model.teacher: soft targets of every input position
            soft = (batch["teacher_items"][:, :-1][keep], batch["teacher_shares"][:, :-1][keep])
        losses = self._target_losses(hidden[keep], targets[keep], inputs, keep, soft)
        if "weights" in batch:
            weights = batch["weights"][:, 1:][keep]
            loss = (losses * weights).sum() / weights.sum().clamp(min=1e-12)
        else:
            loss = losses.mean()
        self._loss_sum += torch.tensor([loss.item() * len(losses), len(losses)], dtype=torch.float64)
        if self._trainer is not None:
            self.log("train/loss", loss, prog_bar=False, batch_size=len(losses))
        return loss

    def _target_losses(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        inputs: torch.Tensor,
        keep: torch.Tensor,
        soft: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Per-row loss of the states ``hidden`` (``inputs``' positions where ``keep``) for ``targets``;
        with ``soft`` (items and shares ``[N, K]``, ``model.teacher``) mixed with the soft targets' loss."""
        seen = prefix_items(inputs, keep) if self.network.history_weight is not None else None
        if self.objective == "sampled_softmax":
            hard, soft_nll = self._sampled_softmax(hidden, targets, seen, None if soft is None else soft[0])
        else:
            logits = hidden @ self.network.item_embeddings().T
            if seen is not None:
                logits = self.network.add_history_bias(logits, *seen)
            # A short teacher list is padded with item 0 at share 0: its index is clamped, its loss weighs nothing.
            soft_nll = (
                None if soft is None else -logits[:, 1:].float().log_softmax(1).gather(1, (soft[0] - 1).clamp(min=0))
            )
            smoothing = self.model_cfg.label_smoothing
            if smoothing:
                # Smoothing spreads mass over real items only: the padding column is left out, not
                # given a -inf logit (which would make the smoothed loss infinite).
                hard = F.cross_entropy(logits[:, 1:].float(), targets - 1, reduction="none", label_smoothing=smoothing)
            else:
                logits[:, 0] = float("-inf")
                hard = F.cross_entropy(logits.float(), targets, reduction="none")
        if soft is None:
            return hard
        shares = soft[1].float()
        weight = self.model_cfg.teacher_weight * (shares.sum(1) > 0)  # rows without a teacher keep the hard loss
        return (1 - weight) * hard + weight * (shares * soft_nll).sum(1)

    @property
    def eval_network(self) -> SequenceNetwork:
        """The evaluated weights. With ``train.ema_decay`` they are the moving average: the
        ``WarmupEMA`` callback swaps it into ``network`` for validation and copies it there when
        training ends; a loaded checkpoint's ``state_dict`` holds it too."""
        return self.network

    def _sampled_softmax(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        seen: tuple[torch.Tensor, torch.Tensor] | None = None,
        soft_items: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Shared popularity-sampled negatives with logQ correction; accidental hits are removed.

        Softmax cross-entropy over each row's candidates (its target, then the shared negatives),
        written so that the ``[N, K]`` logits are made by one ``addmm`` and read by one log-sum-exp:
        the history offset and the accidental hits touch only their few cells, and the target's
        logit stays a column of its own. On CPU these passes over ``N x K``, not the matrix
        product, were most of a step.
        """
        negatives = torch.multinomial(self.log_q.exp(), self.model_cfg.num_negatives, replacement=True)
        table = self.network.item_embeddings()
        pos = ((hidden * table[targets]).sum(-1) - self.log_q[targets]).float()
        # In place from here on: addmm's backward needs its inputs, not its output, and the sum and
        # the gather below keep only shapes and indices, so no pass copies the [N, K] matrix.
        neg = torch.addmm(-self.log_q[negatives], hidden, table[negatives].T).float()
        if seen is not None:
            pos_seen, cells = sampled_seen(seen, targets, negatives)
            weight = self.network.history_weight.float()
            pos = pos + weight * pos_seen
            neg.index_put_(cells, weight.expand(len(cells[0])), accumulate=True)
        hit_rows, hit_slots = matching_slots(targets, negatives)
        smoothing = self.model_cfg.label_smoothing
        if smoothing:  # the mean logit over the candidates left once accidental hits are removed
            hits = torch.zeros_like(pos).index_add(0, hit_rows, neg[hit_rows, hit_slots])
            count = neg.shape[1] + 1 - torch.bincount(hit_rows, minlength=len(pos))
            mean_logit = (pos + neg.sum(1) - hits) / count
        neg.index_put_((hit_rows, hit_slots), neg.new_tensor(float("-inf")))
        neg_lse = neg.logsumexp(1)
        lse = torch.logaddexp(pos, neg_lse)
        nll = lse - pos
        soft_nll = None
        if soft_items is not None:  # each soft item against the same candidates, in the target's place
            logit = ((hidden.unsqueeze(1) * table[soft_items]).sum(-1) - self.log_q[soft_items]).float()
            soft_nll = torch.logaddexp(logit, neg_lse.unsqueeze(1)) - logit
        if smoothing:
            # Label smoothing as in the full softmax, over the candidates this batch has: the mass it
            # spreads goes to the target and the negatives left once accidental hits are removed.
            nll = (1 - smoothing) * nll + smoothing * (lse - mean_logit)
        return nll, soft_nll

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=self.train_cfg.lr, weight_decay=self.train_cfg.weight_decay
        )
        if self.train_cfg.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.train_cfg.epochs)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        return optimizer

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Full-catalogue scores ``[B, n_items + 1]`` in float32, outside any autocast."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            network = self.eval_network
            return network.scores(batch["history"], batch["lengths"]).float()

    def on_validation_epoch_start(self) -> None:
        self.metrics["valid"].reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.metrics["valid"].update(self.score(batch), batch)

    def on_validation_epoch_end(self) -> None:
        values = self.metrics["valid"].compute()  # summed over DDP ranks
        if self.trainer.sanity_checking:
            return
        loss = self._loss_sum.clone()
        if dist.is_available() and dist.is_initialized():
            loss = loss.to(self.device)
            dist.all_reduce(loss)
        elapsed = time.perf_counter() - self._epoch_started
        previous = self.history[-1]["elapsed_s"] if self.history else 0.0
        entry = {
            "epoch": self.current_epoch,
            "train_loss": float(loss[0] / loss[1]) if loss[1] > 0 else None,
            "epoch_s": elapsed,
            "elapsed_s": previous + elapsed,
            "valid": values,
        }
        self.history.append(entry)
        self.log(MONITOR, values["ndcg@10"], sync_dist=True)
        self.log("valid/masked_ndcg@10", values["masked/ndcg@10"], sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self.metrics["test"].reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.metrics["test"].update(self.score(batch), batch)

    def on_test_epoch_end(self) -> None:
        self.test_results = self.metrics["test"].compute()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nightrec_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("nightrec_history", []))
