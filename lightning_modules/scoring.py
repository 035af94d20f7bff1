"""Batch scoring: every known user's top-K items from a trained model, seen items masked.

``score_users`` reads a model folder and tonight's sequences and returns external ids; the
kernel (``top_k_scores``) lives in ``lightning_modules.topk``: chunked over users so memory is
bounded by the chunk size, not the user count. A network's ``history_bias`` only moves items of
the input history, and every one of those is masked here, so the kernel needs only the states.
Closed-form families (collaborative filtering) have no states: their chunks of users are scored
by ``network.scores`` and reduced by ``torch.topk`` directly.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import torch

from lightning_modules.data import csr_rows
from lightning_modules.topk import seen_csr, top_k_scores
from nightrec.layout import FULL_FILE, ITEMS_FILE, TRAIN_FILE, USERS_FILE
from nightrec.schema import ITEM_ID, ITEM_IDX, RANK, SCORE, USER_ID, USER_IDX
from nightrec.shards import in_shard

__all__ = ["score_network", "score_users", "scoring_device", "seen_csr", "top_k_scores"]
# Closed-form families score whole catalogue rows: at most this many floats a chunk (128 MiB).
DIRECT_CELLS = 1 << 25


def scoring_device(accelerator: str) -> str:
    """Where a night scores: on the GPU when training may use one (``train.accelerator`` auto, gpu
    or cuda) and one is visible, else on the CPU. At 1M users x 500k items the product is ~64 TFLOP:
    a quarter of an hour on two cores, seconds on a GPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def score_users(
    model_dir: Path,
    sequences_dir: Path,
    k: int,
    chunk_size: int = 4096,
    device: str = "cpu",
    shard: tuple[int, int] | None = None,
) -> pl.DataFrame:
    """Top-``k`` for every user in ``sequences_dir/full.parquet``: (user_id, rank, item_id, score).

    Loads the network with ``lightning_modules.model_io.load_model`` (the folder is enough), with
    the served weights (refitted on every known transition) where the folder has them.
    Users whose history holds no item the model knows are left out (they get the fallback).
    ``shard`` ``(i, n)``: only the users of user shard ``i`` of ``n`` (``nightrec.shards``).
    """
    from lightning_modules.model_io import load_model

    network, items = load_model(Path(model_dir), served=True)
    return score_network(network, items, Path(sequences_dir), k, chunk_size, device, shard)


def _mapped(frame: pl.DataFrame, column: str, to_model: np.ndarray) -> pl.DataFrame:
    """(user_idx, pos, model item_idx) rows of a list column, items unknown to the model dropped."""
    flat = frame.select(USER_IDX, pl.col(column).alias(ITEM_IDX)).with_row_index("__row").explode(ITEM_IDX)
    flat = flat.drop_nulls(ITEM_IDX).with_columns(pl.int_range(pl.len()).over("__row").alias("__pos"))
    idx = flat.get_column(ITEM_IDX).to_numpy().astype(np.int64)
    inside = idx < len(to_model)
    model_idx = np.where(inside, to_model[np.where(inside, idx, 0)], 0)
    return flat.with_columns(pl.Series(ITEM_IDX, model_idx)).filter(pl.col(ITEM_IDX) > 0).drop("__row")


def score_network(
    network: torch.nn.Module,
    model_items: pl.DataFrame,
    sequences_dir: Path,
    k: int,
    chunk_size: int = 4096,
    device: str = "cpu",
    shard: tuple[int, int] | None = None,
) -> pl.DataFrame:
    """``score_users`` for a loaded network and its vocabulary (``item_id``, ``item_idx``).

    Histories come from ``full.parquet``; every item a user interacted with (``train`` and
    ``full``) is masked. Tonight's item indices are mapped to the model's through the external
    ids, so a vocabulary that grew since training never shifts an item; unknown items are dropped.
    """
    sequences_dir = Path(sequences_dir)
    to_model = _index_map(pl.read_parquet(sequences_dir / ITEMS_FILE), model_items)
    known = pl.read_parquet(sequences_dir / USERS_FILE)
    full = pl.read_parquet(sequences_dir / FULL_FILE)
    if shard is not None:
        known = in_shard(known, *shard)
        full = full.filter(pl.col(USER_IDX).is_in(known.get_column(USER_IDX).implode()))
    history = _mapped(full, "history", to_model)
    users = history.select(USER_IDX).unique().join(known, on=USER_IDX).sort(USER_IDX).with_row_index("__r")
    if users.is_empty():
        return pl.DataFrame(schema={USER_ID: pl.String, RANK: pl.Int32, ITEM_ID: pl.String, SCORE: pl.Float64})
    rows = users.select(USER_IDX, pl.col("__r").cast(pl.Int64))
    history = history.join(rows, on=USER_IDX).sort("__r", "__pos")
    seen = [history.select("__r", ITEM_IDX)]
    train_path = sequences_dir / TRAIN_FILE
    if train_path.is_file():
        train = _mapped(pl.read_parquet(train_path, columns=[USER_IDX, "items"]), "items", to_model)
        seen.append(train.join(rows, on=USER_IDX).select("__r", ITEM_IDX))
    seen_flat = pl.concat(seen).unique().sort("__r", ITEM_IDX)
    crow = _offsets(seen_flat.get_column("__r").to_numpy(), users.height)
    col = torch.from_numpy(seen_flat.get_column(ITEM_IDX).to_numpy().astype(np.int64))
    if getattr(network, "closed_form", False):
        scores, idx = _direct_top_k(network, history, (crow, col), users.height, k, chunk_size, device)
    else:
        states = _user_states(network, history, users.height, chunk_size, device)
        with torch.no_grad():
            item_emb = network.item_embeddings().float().to(states.device)
        scores, idx = top_k_scores(states, item_emb, (crow, col), k, chunk_size)
    return _to_frame(users.get_column(USER_ID), scores, idx, model_items)


def _offsets(rows: np.ndarray, n: int) -> torch.Tensor:
    crow = np.zeros(n + 1, dtype=np.int64)
    crow[1:] = np.cumsum(np.bincount(rows, minlength=n))
    return torch.from_numpy(crow)


def _batches(history: pl.DataFrame, n: int, chunk_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(user rows, right-padded histories, lengths)``, ``chunk_size`` users at a time.

    Users are visited by history length, so each chunk is cut to its longest history and short
    histories do not pay for the long ones' padding.
    """
    r = history.get_column("__r").to_numpy()
    items = history.get_column(ITEM_IDX).to_numpy().astype(np.int64)
    crow = _offsets(r, n).numpy()
    lengths = np.diff(crow)
    order = np.argsort(lengths, kind="stable")
    for lo in range(0, n, chunk_size):
        users = order[lo : lo + chunk_size]
        width = max(1, int(lengths[users].max()))
        # row i of the batch holds the items of user users[i], left-aligned
        cols = np.arange(width)
        valid = cols[None, :] < lengths[users][:, None]
        batch = np.where(valid, items[np.where(valid, crow[users][:, None] + cols[None, :], 0)], 0)
        yield users, torch.from_numpy(batch), torch.from_numpy(lengths[users])


@torch.no_grad()
def _user_states(network: torch.nn.Module, history: pl.DataFrame, n: int, chunk_size: int, device: str) -> torch.Tensor:
    """Final hidden states from right-padded histories, in user order."""
    network = network.to(device).eval()
    out = None
    for users, batch, lengths in _batches(history, n, chunk_size):
        states = network.user_states(batch.to(device), lengths.to(device))
        if out is None:
            out = torch.empty(n, states.shape[1], dtype=torch.float32, device=states.device)
        out[torch.from_numpy(users).to(states.device)] = states.float()
    return out


@torch.no_grad()
def _direct_top_k(
    network: torch.nn.Module,
    history: pl.DataFrame,
    seen: tuple[torch.Tensor, torch.Tensor],
    n: int,
    k: int,
    chunk_size: int,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` straight from ``network.scores``, for networks without a dot-product state
    (closed-form families); seen items and padding masked, as ``top_k_scores`` does."""
    network = network.to(device).eval()
    width = network.n_items + 1
    k = min(k, width)
    out_scores, out_items = torch.empty(n, k), torch.empty(n, k, dtype=torch.long)
    # A chunk's score matrix stays near DIRECT_CELLS floats whatever the catalogue size.
    rows = max(1, min(chunk_size, DIRECT_CELLS // width))
    for users, batch, lengths in _batches(history, n, rows):
        scores = network.scores(batch.to(device), lengths.to(device)).float()
        users = torch.from_numpy(users)
        group, cols = csr_rows(*seen, users)
        scores[:, 0] = -torch.inf
        scores[group.to(scores.device), cols.to(scores.device)] = -torch.inf
        vals, idx = torch.topk(scores, k, dim=1)
        out_scores[users], out_items[users] = vals.cpu(), idx.cpu()
    return out_scores, out_items


def _index_map(seq_items: pl.DataFrame, model_items: pl.DataFrame) -> np.ndarray:
    """Array mapping tonight's item_idx to the model's (0 where the model lacks the item)."""
    joined = seq_items.select(ITEM_ID, ITEM_IDX).join(
        model_items.select(ITEM_ID, pl.col(ITEM_IDX).alias("model_idx")), on=ITEM_ID, how="left"
    )
    out = np.zeros(int(seq_items.get_column(ITEM_IDX).max() or 0) + 1, dtype=np.int64)
    out[joined.get_column(ITEM_IDX).to_numpy()] = joined.get_column("model_idx").fill_null(0).to_numpy()
    return out


def _to_frame(user_ids: pl.Series, scores: torch.Tensor, idx: torch.Tensor, model_items: pl.DataFrame) -> pl.DataFrame:
    n, k = scores.shape
    frame = pl.DataFrame(
        {
            USER_ID: np.repeat(user_ids.to_numpy(), k),
            RANK: np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            ITEM_IDX: idx.reshape(-1).numpy(),
            SCORE: scores.reshape(-1).double().numpy(),
        }
    )
    frame = frame.filter(pl.col(SCORE).is_finite())
    items = pl.DataFrame(
        {ITEM_IDX: model_items.get_column(ITEM_IDX).cast(pl.Int64), ITEM_ID: model_items.get_column(ITEM_ID)}
    )
    return frame.join(items, on=ITEM_IDX, how="left").select(USER_ID, RANK, ITEM_ID, SCORE).sort(USER_ID, RANK)
