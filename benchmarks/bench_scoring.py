"""Batch scoring and publishing throughput, printed as measured numbers and ratios.

Scoring: top-K for U users over N items with d-dim states on CPU, seen items masked; users/s,
GFLOP/s (2*U*N*d) and the fraction of this machine's own ``torch.mm`` GFLOP/s, measured in the
same run (a square fp32 matmul, before and after scoring; their mean is the reference).
Publishing: U x K rows into the Parquet partition + DuckDB file, and into PostgreSQL when a URL
is given (``--postgres-url`` or NIGHTREC_TEST_POSTGRES_URL): rows/s.

    nice -n 10 python benchmarks/bench_scoring.py                  # 200k users x 50k items x 64
    nice -n 10 python benchmarks/bench_scoring.py --users 20000    # a quick look
"""

import os

# On a shared machine OpenMP's default spin-then-sleep barriers collapse when a thread is
# descheduled; passive waiting keeps the many short parallel regions of the kernel usable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.topk import top_k_scores
from nightrec.config import load_config
from nightrec.publish.local import publish_all
from nightrec.schema import RECOMMENDATION_SCHEMA, REFRESHED_AT


def mm_gflops(m: int = 2048, k: int = 2048, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of an fp32 ``(m, k) @ (k, n)`` ``torch.mm`` into a preallocated output.

    The default square shape is the machine's reference; a scoring chunk's shape gives context.
    """
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def bench_scoring(args) -> None:
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(args.users, args.dim, generator=gen)
    items = torch.randn(args.items + 1, args.dim, generator=gen)
    counts = torch.randint(0, 2 * args.seen, (args.users,), generator=gen)
    crow = torch.zeros(args.users + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(counts, 0)
    col = torch.randint(1, args.items + 1, (int(crow[-1]),), generator=gen)
    # Correctness on a sample first: the blocked kernel must equal brute force.
    sample = 500
    _, idx = top_k_scores(states[:sample], items, (crow[: sample + 1], col[: crow[sample]]), args.k, args.chunk)
    ref = states[:sample] @ items.T
    ref[:, 0] = -torch.inf
    rows = torch.repeat_interleave(torch.arange(sample), counts[:sample])
    ref[rows, col[: crow[sample]]] = -torch.inf
    exact = torch.equal(idx, torch.topk(ref, args.k, dim=1).indices)

    before = mm_gflops()
    start = time.perf_counter()
    top_k_scores(states, items, (crow, col), args.k, args.chunk)
    elapsed = time.perf_counter() - start
    after = mm_gflops()
    shaped = mm_gflops(min(args.chunk, args.users), args.dim, args.items + 1, reps=3)
    reference = (before + after) / 2
    gflops = 2 * args.users * (args.items + 1) * args.dim / elapsed / 1e9
    print(
        f"scoring: top-{args.k} for {args.users:,} users x {args.items:,} items x {args.dim} dims, "
        f"{int(crow[-1]):,} seen items masked, chunk {args.chunk}, {torch.get_num_threads()} thread(s), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    print(f"  exact vs brute force on {sample} users: {exact}")
    print(f"  {elapsed:.1f} s, {args.users / elapsed:,.0f} users/s, {gflops:.1f} GFLOP/s")
    print(
        f"  torch.mm reference (square {2048}, fp32): {before:.1f} before, {after:.1f} after -> {reference:.1f} GFLOP/s"
    )
    print(
        f"  same-shape torch.mm ({min(args.chunk, args.users)} x {args.dim} @ {args.dim} x {args.items + 1}): {shaped:.1f} GFLOP/s"
    )
    print(
        f"  fraction of matmul throughput: {gflops / reference:.0%} (target >= 30%); of same-shape mm: {gflops / shaped:.0%}"
    )


def recommendation_table(users: int, k: int, run_date: date) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = users * k
    return pl.DataFrame(
        {
            "run_date": [run_date] * n,
            "user_id": np.repeat(np.char.add("u", np.arange(users).astype(str)), k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), users),
            "item_id": np.char.add("i", rng.integers(0, 50_000, n).astype(str)),
            "score": rng.random(n),
            "source": ["model"] * n,
            "model_version": ["gru@bench"] * n,
        },
        schema={name: dtype for name, dtype in RECOMMENDATION_SCHEMA.items() if name != REFRESHED_AT},
    )


def bench_publish(args) -> None:
    recs = recommendation_table(args.users, args.k, date(2026, 3, 11))
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(None, {"data_dir": tmp}, environ={})
        start = time.perf_counter()
        publish_all(recs, config, date(2026, 3, 11))
        elapsed = time.perf_counter() - start
        print(
            f"publish: {recs.height:,} rows -> Parquet + DuckDB in {elapsed:.1f} s: {recs.height / elapsed:,.0f} rows/s"
        )
    url = args.postgres_url or os.environ.get("NIGHTREC_TEST_POSTGRES_URL")
    if not url:
        print(
            "publish: PostgreSQL skipped (no --postgres-url / NIGHTREC_TEST_POSTGRES_URL; source tests/postgres_server.sh)"
        )
        return
    from nightrec.publish.postgres import describe, publish_postgres

    schema = f"bench_{os.getpid()}"
    try:
        for label in ("first", "rerun"):
            start = time.perf_counter()
            publish_postgres(recs, url, date(2026, 3, 11), schema=schema)
            elapsed = time.perf_counter() - start
            print(
                f"publish: {recs.height:,} rows -> PostgreSQL {describe(url)} ({label}: COPY + swap + ANALYZE) "
                f"in {elapsed:.1f} s: {recs.height / elapsed:,.0f} rows/s"
            )
    finally:
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seen", type=int, default=20, help="Mean seen items per user (masked).")
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own).")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--skip-publish", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_scoring(args)
    if not args.skip_publish:
        bench_publish(args)


if __name__ == "__main__":
    main()
