"""Soft targets from item_cf for a neural family (knowledge distillation, ``model.teacher``).

Each training position (a user's prefix) gets the teacher's ``teacher_top_k`` items and their
shares of its similarity mass; the neural loss then learns the next item and, with weight
``teacher_weight``, these items. The teacher of a user is fitted on the other users only
(``FOLDS`` folds), so it never shows a user their own later items: fitted on everyone, item_cf
lists the true next item of a training prefix in its top 20 for 83% of Amazon Sports' training
positions, its own transitions remembered, not predicted.

With several ``model.similarity_alpha`` the teacher takes the one whose fold-0 teacher lists the
next item most often on fold 0's own positions: positions it was not fitted on.
"""

import json
import time
from typing import Any

import numpy as np
import torch

from lightning_modules.families.item_cf import ItemCF
from lightning_modules.launch import is_rank_zero

FOLDS = 2
CHUNK = 4096
# Positions of fold 0 that choose among several similarity_alpha.
CHOICE_POSITIONS = 20_000


def prefix_histories(flat: np.ndarray, lengths: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each position's prefix, its last ``width`` items up to and including it, right-padded: ``([P, width], [P])``."""
    ends = np.cumsum(lengths)
    starts = np.repeat(ends - lengths, lengths)
    at = np.arange(len(flat))
    kept = np.minimum(at - starts + 1, width)
    cols = np.arange(width)
    valid = cols[None, :] < kept[:, None]
    pos = np.where(valid, at[:, None] - kept[:, None] + 1 + cols[None, :], 0)
    return torch.from_numpy(np.where(valid, flat[pos], 0).astype(np.int64)), torch.from_numpy(kept.astype(np.int64))


def next_items(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The item after each position in its own sequence, 0 after a sequence's last."""
    out = np.zeros(len(flat), dtype=np.int64)
    out[:-1] = flat[1:]
    out[np.cumsum(lengths)[lengths > 0] - 1] = 0
    return out


def teacher_hits(items: torch.Tensor, flat: np.ndarray, lengths: np.ndarray) -> float:
    """Share of positions with a next item whose teacher lists that item."""
    nxt = torch.from_numpy(next_items(flat, lengths))
    has = nxt > 0
    if not bool(has.any()):
        return 0.0
    return float((items[has] == nxt[has].unsqueeze(1)).any(1).float().mean())


def _soft_targets(
    teacher: ItemCF, histories: torch.Tensor, kept: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ``top_k`` items of each history and their shares of its (positive) scores."""
    items = torch.zeros(len(histories), top_k, dtype=torch.long)
    shares = torch.zeros(len(histories), top_k)
    k = min(top_k, teacher.n_items)
    for lo in range(0, len(histories), CHUNK):
        scores = teacher.scores(histories[lo : lo + CHUNK], kept[lo : lo + CHUNK])
        scores[:, 0] = 0.0  # padding; read items are already below zero
        top, idx = torch.topk(scores.clamp(min=0.0), k, dim=1)
        items[lo : lo + CHUNK, :k] = idx
        shares[lo : lo + CHUNK, :k] = top / top.sum(1, keepdim=True).clamp(min=1e-12)
    return items, shares


def teacher_targets(
    model_config: Any, flat: np.ndarray, lengths: np.ndarray, n_items: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(items [P, K], shares [P, K], alpha)`` for every position of the flat training sequences,
    and the ``similarity_alpha`` the teachers were fitted with."""
    top_k = model_config.teacher_top_k
    users = np.repeat(np.arange(len(lengths)), lengths)
    fold = np.arange(len(lengths)) % FOLDS
    histories, kept = prefix_histories(flat, lengths, width)
    nxt = next_items(flat, lengths)

    def fitted(f: int, alpha: float) -> ItemCF:
        teacher = ItemCF.from_config(model_config, n_items)
        teacher.arch["similarity_alpha"] = alpha
        teacher.fit(flat[fold[users] != f], lengths[fold != f])
        return teacher

    alphas = list(model_config.similarity_alpha)
    teachers = {0: fitted(0, alphas[0])}
    if len(alphas) > 1:
        sample = np.flatnonzero((fold[users] == 0) & (nxt > 0))[:CHOICE_POSITIONS]
        best = -1.0
        for alpha in alphas:
            candidate = teachers[0] if alpha == alphas[0] else fitted(0, alpha)
            items, _ = _soft_targets(candidate, histories[sample], kept[sample], top_k)
            hits = float((items == torch.from_numpy(nxt[sample]).unsqueeze(1)).any(1).float().mean())
            if hits > best:
                best, teachers[0] = hits, candidate
    alpha = teachers[0].arch["similarity_alpha"]
    items = torch.zeros(len(flat), top_k, dtype=torch.long)
    shares = torch.zeros(len(flat), top_k)
    for f in range(FOLDS):
        mine = torch.from_numpy(np.flatnonzero(fold[users] == f))
        teacher = teachers.get(f) or fitted(f, alpha)
        items[mine], shares[mine] = _soft_targets(teacher, histories[mine], kept[mine], top_k)
    return items, shares, alpha


def add_teacher(config: Any, data: Any) -> dict[str, Any]:
    """Give ``data`` (a loaded ``SequenceDataModule``) its soft targets; returns what ``metrics.json``
    records of them: the teacher, its ``similarity_alpha``, how often its lists hold the next
    training item (held out by the folds), and the seconds it took."""
    started = time.perf_counter()
    flat, lengths, _ = data.train_lists
    items, shares, alpha = teacher_targets(config.model, flat, lengths, data.n_items, config.sequences.max_len)
    data.set_teacher(items, shares)
    info = {
        "family": config.model.teacher,
        "similarity_alpha": alpha,
        f"next_item_in_top_{config.model.teacher_top_k}": teacher_hits(items, flat, lengths),
        "seconds": time.perf_counter() - started,
    }
    if is_rank_zero():
        print(f"teacher: {json.dumps(info)}", flush=True)
    return info
