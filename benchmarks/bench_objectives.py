"""Where sampled softmax starts to pay: one training step of each objective as the catalogue grows.

    nice -n 10 python benchmarks/bench_objectives.py [--items 1000 2000 5000 ...] [--threads 2]

One step = forward, loss, backward and AdamW update of the default network on one full batch
(``train.batch_size`` windows of ``sequences.max_len`` positions, items drawn by a power law). The
ratio full CE / sampled softmax is measured in the same run at each size; ``model.loss: auto``
switches to sampled softmax above ``model.sampled_softmax_above`` (chosen from this table: the
first size where sampled softmax is clearly faster, while full CE keeps its quality edge below).
"""

import os

# OpenMP threads wait passively, as in flows/__init__.py: spinning collapses on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_modules.families import build_network  # noqa: E402
from lightning_modules.module import NextItemModule  # noqa: E402
from nightrec.config import NightrecConfig  # noqa: E402


def step_seconds(config: NightrecConfig, n_items: int, loss: str, repeats: int) -> float:
    torch.manual_seed(0)
    model = config.model.model_copy(update={"loss": loss})
    network = build_network(model, n_items)
    counts = (1.0 / torch.arange(1, n_items + 1) ** 1.1 * 1e6).long().clamp(min=1).tolist()
    module = NextItemModule(network, model, config.train, counts)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.train.lr)
    probs = torch.tensor(counts, dtype=torch.float)
    shape = (config.train.batch_size, config.sequences.max_len + 1)
    times = []
    for i in range(repeats + 1):
        batch = {"items": torch.multinomial(probs, shape[0] * shape[1], replacement=True).view(shape) + 1}
        started = time.perf_counter()
        module.training_step(batch, i).backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:  # the first step warms up the allocator
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", nargs="+", type=int, default=[1000, 2000, 5000, 10000, 20000, 50000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = NightrecConfig()
    print(f"one step of {config.train.batch_size} x {config.sequences.max_len} positions, {args.threads} threads")
    print(f"{'items':>8}{'ce ms':>9}{'sampled ms':>12}{'ce / sampled':>14}")
    for n in args.items:
        ce = step_seconds(config, n, "ce", args.repeats)
        sampled = step_seconds(config, n, "sampled_softmax", args.repeats)
        print(f"{n:>8}{ce * 1e3:>9.1f}{sampled * 1e3:>12.1f}{ce / sampled:>14.2f}", flush=True)
    print(f"model.sampled_softmax_above today: {config.model.sampled_softmax_above}")


if __name__ == "__main__":
    main()
