"""Reading the sequence Parquet files into tensors, and batching them without per-user Python loops.

Training rows are windows of ``max_len + 1`` items cut from each user's whole training sequence,
aligned to its end, so every training target is kept (the oldest window is right-padded).
A batch is one fancy-indexing of a prebuilt tensor, cut to its longest row; the batch samplers
(``batching``) shuffle, bucket training windows by length and shard under DDP.
"""

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from lightning_modules.batching import BatchSampler, LengthBuckets
from nightrec.errors import InputError
from nightrec.evaluation.sample import eval_sample
from nightrec.layout import ITEMS_FILE, SPLIT_FILES, TRAIN_FILE
from nightrec.schema import ITEM_IDX, USER_IDX
from nightrec.sequences.splits import slice_columns


def _flat_lists(frame: pl.DataFrame, column: str, path: Path, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated values and per-row lengths of a List[Int] column, ids checked against the vocabulary."""
    lists = frame.get_column(column)
    lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = lists.explode().drop_nulls().to_numpy().astype(np.int64)
    _check_ids(flat, path, column, n_items)
    return flat, lengths


def _check_ids(values: np.ndarray, path: Path, column: str, n_items: int) -> None:
    bad = (values < 1) | (values > n_items)
    if bad.any():
        raise InputError(
            f"{path}: column '{column}' holds item id {int(values[bad][0])} outside the vocabulary "
            f"(items.parquet has item_idx 1..{n_items}; {int(bad.sum())} such values)"
        )


def reversed_positions(lengths: np.ndarray) -> np.ndarray:
    """Positions that read each row of a flat array (rows of ``lengths``) from its end to its start."""
    ends = np.cumsum(lengths) - 1
    within = np.arange(int(lengths.sum())) - np.repeat(ends - lengths + 1, lengths)
    return np.repeat(ends, lengths) - within


def pad_tails(flat: np.ndarray, lengths: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``width`` items of each row, right-padded with 0: ``([N, width], lengths [N])``."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    kept = np.minimum(lengths, width)
    start = offsets + lengths - kept
    cols = np.arange(width)
    valid = cols[None, :] < kept[:, None]
    pos = np.where(valid, start[:, None] + cols[None, :], 0)
    out = np.where(valid, flat[pos] if flat.size else 0, 0)
    return torch.from_numpy(out.astype(np.int64)), torch.from_numpy(kept)


def window_positions(lengths: np.ndarray, max_len: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions ``[N, max_len + 1]`` (and their validity) of windows ending at ``n, n - stride, ...``."""
    n_windows = np.where(lengths >= 2, (lengths - 2) // stride + 1, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    seq = np.repeat(np.arange(len(lengths)), n_windows)
    j = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    end = lengths[seq] - j * stride
    start = np.maximum(end - (max_len + 1), 0)
    cols = np.arange(max_len + 1)
    valid = start[:, None] + cols[None, :] < end[:, None]
    return np.where(valid, offsets[seq][:, None] + start[:, None] + cols[None, :], 0), valid


def build_windows(flat: np.ndarray, lengths: np.ndarray, max_len: int, stride: int) -> torch.Tensor:
    """Training windows ``[N, max_len + 1]`` ending at ``n, n - stride, ...`` of each sequence."""
    pos, valid = window_positions(lengths, max_len, stride)
    windows = np.where(valid, flat[pos] if flat.size else 0, 0)
    return torch.from_numpy(windows.astype(np.int64))


def expand_ranges(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every element of the ranges ``[start, start + count)`` as ``(range number, position)``, in order."""
    group = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    within = torch.arange(len(group), device=counts.device) - (torch.cumsum(counts, 0) - counts)[group]
    return group, starts[group] + within


def csr_rows(crow: torch.Tensor, col: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch_row, col)`` pairs of the CSR rows ``rows``, gathered with tensor ops only."""
    group, pos = expand_ranges(crow[rows], crow[rows + 1] - crow[rows])
    return group, col[pos]


class TrainWindows:
    """Dataset indexed by a whole batch of window ids at once; ``weights`` align with ``items``.

    Windows are right-padded, so a batch is cut to its longest window: padding columns cost nothing.
    """

    def __init__(
        self,
        windows: torch.Tensor,
        weights: torch.Tensor | None = None,
        teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ):
        self.windows, self.weights, self.teacher = windows, weights, teacher
        self.lengths = (windows > 0).sum(1)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        width = max(int(self.lengths[idx].max()), 2) if len(idx) else self.windows.shape[1]
        batch = {"window": idx, "items": self.windows[idx, :width]}
        if self.weights is not None:
            batch["weights"] = self.weights[idx, :width]
        if self.teacher is not None:  # (flat position of each window cell or -1, items [P, K], shares [P, K])
            positions, items, shares = self.teacher
            at = positions[idx, :width]
            known = (at >= 0) & (at < len(items))
            at = torch.where(known, at, 0)
            batch["teacher_items"] = items[at]
            batch["teacher_shares"] = shares[at] * known.unsqueeze(-1)
        return batch


def slice_tensors(frame: pl.DataFrame, train_lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(activity, cold)`` of a validation or test frame: the user's training events and whether
    the target is a cold item (``nightrec.sequences.splits.slice_columns``). A folder written
    before those columns gives ``train_lengths`` (the training sequence's) and no cold targets."""
    activity, cold = slice_columns(frame)
    activity = train_lengths if activity is None else activity
    cold = np.zeros(frame.height) if cold is None else cold
    return torch.from_numpy(activity.astype(np.int64)), torch.from_numpy(cold.astype(bool))


class EvalRows:
    """Validation or test rows: padded history, target, activity (the user's training events),
    whether the target is a cold item, and the CSR of seen items."""

    def __init__(self, history, lengths, target, activity, seen_crow, seen_col, cold=None):
        self.history, self.lengths, self.target, self.activity = history, lengths, target, activity
        self.seen_crow, self.seen_col = seen_crow, seen_col
        self.cold = torch.zeros(len(target), dtype=torch.bool) if cold is None else cold

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        seen_rows, seen_cols = csr_rows(self.seen_crow, self.seen_col, idx)
        width = max(int(self.lengths[idx].max()), 1) if len(idx) else self.history.shape[1]
        return {
            "history": self.history[idx, :width],
            "lengths": self.lengths[idx],
            "target": self.target[idx],
            "activity": self.activity[idx],
            "cold": self.cold[idx],
            "seen_rows": seen_rows,
            "seen_cols": seen_cols,
        }


class SequenceDataModule(L.LightningDataModule):
    """Train windows and evaluation rows from a sequences folder (see contracts: Sequences)."""

    def __init__(
        self,
        sequences_dir: Path,
        max_len: int,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        stride: int | None = None,
        window_len: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        bucket_by_length: bool = True,
        eval_users: int | None = None,
        reversed_copies: bool = False,
    ):
        super().__init__()
        self.dir = Path(sequences_dir)
        self.max_len, self.batch_size, self.eval_batch_size = max_len, batch_size, eval_batch_size
        # Training windows may be longer than the evaluation history: more context per target.
        self.window_len = window_len or max_len
        self.stride, self.seed = stride or self.window_len, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.bucket_by_length = bucket_by_length
        self.eval_users = eval_users  # validation and test rank this fixed hash sample of users
        self.reversed_copies = reversed_copies
        self.items: pl.DataFrame | None = None

    @classmethod
    def from_config(cls, sequences_dir: Path, config: Any, pin_memory: bool = False, **overrides: Any):
        """The DataModule of a run config's ``sequences`` and ``train`` sections; ``overrides`` win."""
        tc = config.train
        settings = {
            "max_len": config.sequences.max_len,
            "batch_size": tc.batch_size,
            "eval_batch_size": tc.eval_batch_size,
            "stride": tc.window_stride,
            "window_len": tc.window_len,
            "seed": tc.seed,
            "num_workers": tc.num_workers,
            "pin_memory": pin_memory,
            "bucket_by_length": tc.bucket_by_length,
            "eval_users": tc.eval_users,
            "reversed_copies": tc.reversed_copies,
        }
        return cls(sequences_dir, **{**settings, **overrides})

    def _read(self, name: str) -> pl.DataFrame:
        path = self.dir / name
        if not path.is_file():
            raise InputError(f"{path}: sequence file not found (expected the output of build_sequences)")
        return pl.read_parquet(path)

    def load(self) -> None:
        """Read and check every file; idempotent."""
        if self.items is not None:
            return
        self.items = self._read(ITEMS_FILE).sort(ITEM_IDX)
        self.n_items = self.items.height
        idx = self.items.get_column(ITEM_IDX).to_numpy()
        if self.n_items == 0 or not np.array_equal(idx, np.arange(1, self.n_items + 1)):
            raise InputError(f"{self.dir / ITEMS_FILE}: column 'item_idx' must be 1..n_items without gaps")
        self.train_on(self._read(TRAIN_FILE), self.dir / TRAIN_FILE)
        self.eval_rows = {name: self._eval_rows(name) for name in ("valid", "test")}

    def train_on(self, train: pl.DataFrame, path: Path) -> None:
        """Training windows (and ``train_lists``) from ``train`` (``user_idx, items[, weights]``),
        read from ``path``: ``train.parquet`` when loading, the refit's sequences after it."""
        flat, lengths = _flat_lists(train, "items", path, self.n_items)
        self.train_lists = (flat, lengths, train.get_column(USER_IDX).to_numpy())
        if self.reversed_copies:
            backwards = reversed_positions(lengths)
            flat, lengths = np.concatenate([flat, flat[backwards]]), np.concatenate([lengths, lengths])
        pos, valid = window_positions(lengths, self.window_len, self.stride)
        self.windows = torch.from_numpy(np.where(valid, flat[pos] if flat.size else 0, 0).astype(np.int64))
        self.positions = torch.from_numpy(np.where(valid, pos, -1).astype(np.int64))
        self.teacher = None  # set_teacher: soft targets of these training sequences' positions
        # Optional per-position weights (sequences.event_weights); weight t belongs to target t.
        self.weights = None
        if "weights" in train.columns:
            w = train.get_column("weights").explode().drop_nulls().to_numpy().astype(np.float32)
            if len(w) != len(self.train_lists[0]):
                raise InputError(f"{path}: column 'weights' does not align with 'items'")
            if self.reversed_copies:
                w = np.concatenate([w, w[backwards]])
            self.weights = torch.from_numpy(np.where(valid, w[pos] if w.size else 0, 0).astype(np.float32))
        if len(self.windows) == 0:
            raise InputError(f"{path}: empty training set (no user has two training items)")

    def set_teacher(self, items: torch.Tensor, shares: torch.Tensor) -> None:
        """Soft targets ``[P, K]`` for the ``P`` positions of ``train_lists`` (reversed copies get none)."""
        if len(items) != len(self.train_lists[0]):
            raise ValueError(f"teacher has {len(items)} positions, the training sequences {len(self.train_lists[0])}")
        self.teacher = (items, shares)

    def _eval_rows(self, split: str) -> EvalRows:
        path = self.dir / SPLIT_FILES[split]
        frame = self._read(SPLIT_FILES[split])
        frame = frame[eval_sample(frame.get_column(USER_IDX).to_numpy(), self.eval_users)]
        targets = frame.get_column("target").to_numpy().astype(np.int64)
        _check_ids(targets, path, "target", self.n_items)
        flat, lengths = _flat_lists(frame, "history", path, self.n_items)
        history, hist_len = pad_tails(flat, lengths, self.max_len)
        # Seen items: the user's training sequence plus the split's history (which may reach past it).
        tr_flat, tr_len, tr_users = self.train_lists
        users = frame.get_column(USER_IDX).to_numpy()
        order = np.argsort(tr_users, kind="stable")
        at = np.minimum(np.searchsorted(tr_users[order], users), max(len(order) - 1, 0))
        found = len(order) > 0 and tr_users[order][at] == users
        tr_rows = np.where(found, order[at] if len(order) else -1, -1)
        tr_off = np.concatenate([[0], np.cumsum(tr_len)]).astype(np.int64)
        seen_len = np.where(tr_rows >= 0, tr_len[tr_rows], 0)
        seen_pos = np.repeat(tr_off[:-1][tr_rows], seen_len) + (
            np.arange(seen_len.sum()) - np.repeat(np.cumsum(seen_len) - seen_len, seen_len)
        )
        user_of_seen = np.concatenate(
            [np.repeat(np.arange(len(tr_rows)), seen_len), np.repeat(np.arange(len(lengths)), lengths)]
        )
        seen = np.unique(user_of_seen * (self.n_items + 1) + np.concatenate([tr_flat[seen_pos], flat]))
        rows, cols = seen // (self.n_items + 1), seen % (self.n_items + 1)
        crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(targets)))])
        activity, cold = slice_tensors(frame, seen_len)
        return EvalRows(
            history,
            hist_len,
            torch.from_numpy(targets),
            activity,
            torch.from_numpy(crow.astype(np.int64)),
            torch.from_numpy(cols.astype(np.int64)),
            cold,
        )

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        rank, world = self._rank_world()
        if shuffle and self.bucket_by_length:
            budget = batch_size * (self.window_len + 1)
            sampler = LengthBuckets(dataset.lengths.numpy(), budget, self.seed, rank, world)
        else:
            order = torch.argsort(dataset.lengths, stable=True) if self.bucket_by_length and not shuffle else None
            sampler = BatchSampler(len(dataset), batch_size, shuffle, self.seed, rank, world, order)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        teacher = None if self.teacher is None else (self.positions, *self.teacher)
        return self._loader(TrainWindows(self.windows, self.weights, teacher), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_rows["valid"], self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_rows["test"], self.eval_batch_size, shuffle=False)
