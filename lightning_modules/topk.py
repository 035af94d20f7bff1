"""The top-K kernel: every user's best items from ``user_states @ item_embeddings().T``.

Scores are computed in chunks of users and, within a chunk, in item tiles that stay in the CPU
cache, so memory is bounded by the chunk and tile sizes, never by the user count. Each tile is
reduced at once to block maxima (blocks of 64 items): the top-K items always lie in the K
blocks with the highest maxima, so only blocks whose maximum reaches a running lower bound on
the K-th best score are kept, and ``torch.topk`` finally runs over K blocks, never over the
whole catalogue. On a GPU the plain chunked ``torch.topk`` is used.
"""

import torch

BLOCK = 64
GROUPS_PER_K = 4
REFRESH = 8
# Per-tile torch overhead favours larger tiles than L2 (2 MiB here); 8 MiB measured best on
# this CPU, 1 and 2 threads (benchmarks/bench_scoring.py).
_TILE_BYTES = 8 << 20
Seen = list[torch.Tensor] | tuple[torch.Tensor, torch.Tensor] | None


def seen_csr(seen: Seen, n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(crow, col) int64 tensors from a list of per-user item-index tensors or a CSR pair."""
    if seen is None:
        return torch.zeros(n_users + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    if isinstance(seen, tuple):
        crow, col = seen
        return crow.long(), col.long()
    if len(seen) != n_users:
        raise ValueError(f"seen has {len(seen)} rows for {n_users} users")
    lengths = torch.tensor([len(s) for s in seen], dtype=torch.long)
    crow = torch.zeros(n_users + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(lengths, 0)
    col = torch.cat([torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in seen]) if seen else crow[:0]
    return crow, col


def _chunk_seen(crow: torch.Tensor, col: torch.Tensor, u0: int, u1: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.repeat_interleave(torch.arange(u1 - u0), crow[u0 + 1 : u1 + 1] - crow[u0:u1])
    return rows.to(device), col[crow[u0] : crow[u1]].to(device)


def _exact_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.topk(scores, min(k, scores.shape[1]), dim=1)


@torch.no_grad()
def top_k_scores(
    user_states: torch.Tensor,
    item_embeddings: torch.Tensor,
    seen: Seen,
    k: int,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (scores, item_idx) per user, each ``[n_users, k]``, best first.

    Row 0 of ``item_embeddings`` is padding and never returned; ``seen`` (per-user item
    indices, as a list of tensors or CSR ``(crow, col)``) is masked. Where a user has fewer
    than ``k`` eligible items the tail holds score ``-inf``; callers drop those.
    """
    n_users, n_rows = user_states.shape[0], item_embeddings.shape[0]
    device = user_states.device
    crow, col = seen_csr(seen, n_users)
    k_eff = min(k, n_rows)
    out_scores = torch.empty(n_users, k_eff, dtype=torch.float32)
    out_items = torch.empty(n_users, k_eff, dtype=torch.long)
    items_t = item_embeddings.float().T.contiguous()
    users = user_states.float()
    blocked = device.type == "cpu" and n_rows > 4 * k * BLOCK
    if blocked:
        # One tile, allocated once and sized to stay in cache while it is reduced.
        rows_per_chunk = min(chunk_size, n_users)
        per_tile = max(1, _TILE_BYTES // (4 * rows_per_chunk * BLOCK))
        tile = torch.empty(rows_per_chunk, per_tile * BLOCK)
    for u0 in range(0, n_users, chunk_size):
        u1 = min(u0 + chunk_size, n_users)
        rows, cols = _chunk_seen(crow, col, u0, u1, device)
        if blocked:
            vals, idx = _blocked_chunk(users[u0:u1], items_t, rows, cols, k_eff, tile)
        else:
            scores = users[u0:u1] @ items_t
            scores[:, 0] = -torch.inf
            scores[rows, cols] = -torch.inf
            vals, idx = _exact_top_k(scores, k_eff)
        out_scores[u0:u1], out_items[u0:u1] = vals.cpu(), idx.cpu()
    return out_scores, out_items


def _blocked_chunk(
    users: torch.Tensor, items_t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, k: int, tile: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk on CPU in a single pass over item tiles that stay in cache.

    Each tile is reduced to block maxima; a running threshold (the k-th best block maximum so
    far, bounded from below cheaply) only rises, and a block is kept as a candidate when its
    maximum reaches it. Every final top-k item lies in such a block, so the last
    ``topk`` runs over a few candidates.
    """
    b, n_rows = users.shape[0], items_t.shape[1]
    width = tile.shape[1]
    per_tile = width // BLOCK
    tile = tile[:b]
    n_tiles = -(-n_rows // width)
    n_groups = GROUPS_PER_K * k
    group_max = torch.full((b, n_groups), -torch.inf)
    groups = (torch.arange(n_tiles * per_tile) % n_groups).expand(b, -1)
    # Masked (-inf) blocks must never count as candidates, so the threshold starts above -inf.
    floor = torch.finfo(tile.dtype).min
    threshold = torch.full((b, 1), floor)
    # Seen items as flat offsets into each tile, grouped by tile: one index_fill_ per tile.
    tile_of = cols // width
    order = torch.argsort(tile_of)
    rows, cols, tile_of = rows[order], cols[order], tile_of[order]
    in_tile = rows * width + (cols - tile_of * width)
    bounds = torch.searchsorted(tile_of, torch.arange(n_tiles + 1)).tolist()
    kept = []
    for t in range(n_tiles):
        lo, hi = t * width, min((t + 1) * width, n_rows)
        if hi - lo < width:
            # The last, partial tile: columns past the catalogue can never win.
            tile[:, hi - lo :] = -torch.inf
            tile[:, : hi - lo] = users @ items_t[:, lo:hi]
        else:
            torch.mm(users, items_t[:, lo:hi], out=tile)
        if t == 0:
            tile[:, 0] = -torch.inf
        if bounds[t + 1] > bounds[t]:
            tile.view(-1).index_fill_(0, in_tile[bounds[t] : bounds[t + 1]], -torch.inf)
        blocks = tile.view(b, per_tile, BLOCK)
        maxima = blocks.amax(dim=2)
        # A lower bound on the k-th best score so far without a topk over all blocks (slow on
        # CPU): blocks fall into interleaved groups; each group's maximum is a distinct real
        # item, so the k-th best group maximum is reached by k items. Refreshed every few tiles.
        group_max.scatter_reduce_(1, groups[:, t * per_tile : (t + 1) * per_tile], maxima, reduce="amax")
        if t < REFRESH or t % REFRESH == REFRESH - 1:
            threshold = _kth_best(group_max, k).clamp_min_(floor)
        flat = (maxima >= threshold).view(-1).nonzero().view(-1)
        if flat.numel():
            # index_select copies whole 64-float rows: far cheaper than 2-D advanced indexing.
            kept.append((blocks.view(b * per_tile, BLOCK).index_select(0, flat), maxima.view(-1)[flat], flat, t))
    return _finish(kept, _kth_best(group_max, k).view(-1), b, k, per_tile)


def _kth_best(values: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(values, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)


def _finish(kept: list, threshold: torch.Tensor, b: int, k: int, per_tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row top-k from the candidate blocks kept by ``_blocked_chunk``.

    Blocks below the final threshold are dropped; of the rest, the k blocks with the highest
    maxima hold the top-k items. Only those are laid out as ``[b, k * BLOCK]`` for the last
    ``topk``, so no ``topk`` ever runs over the whole catalogue.
    """
    if not kept:
        return torch.full((b, k), -torch.inf), torch.zeros((b, k), dtype=torch.long)
    vals, maxima, rows, starts = [], [], [], []
    for block_vals, block_max, flat, t in kept:
        block_row = flat // per_tile
        sel = (block_max >= threshold[block_row]).nonzero().view(-1)
        vals.append(block_vals.index_select(0, sel))
        maxima.append(block_max[sel])
        rows.append(block_row[sel])
        starts.append((t * per_tile + flat[sel] % per_tile) * BLOCK)
    vals, maxima, rows, starts = torch.cat(vals), torch.cat(maxima), torch.cat(rows), torch.cat(starts)
    order = torch.argsort(rows, stable=True)
    maxima, rows = maxima[order], rows[order]
    counts = torch.bincount(rows, minlength=b)
    slot = torch.arange(rows.numel()) - (torch.cumsum(counts, 0) - counts)[rows]
    width = max(int(counts.max()), k)
    padded_max = torch.full((b, width), -torch.inf)
    padded_max[rows, slot] = maxima
    where = torch.zeros((b, width), dtype=torch.long)
    where[rows, slot] = order
    best_max, best_slot = torch.topk(padded_max, k, dim=1)
    best = torch.gather(where, 1, best_slot)  # [b, k] rows of vals
    cand = vals.index_select(0, best.view(-1)).view(b, k, BLOCK)
    # A row with fewer than k candidate blocks picked padding slots: those hold nothing.
    cand[best_max == -torch.inf] = -torch.inf
    cand = cand.view(b, k * BLOCK)
    top_vals, pos = torch.topk(cand, k, dim=1)
    origin = starts[best]
    return top_vals, torch.gather(origin, 1, pos // BLOCK) + pos % BLOCK
