"""Where the trainer's processes come from: one machine (Lightning starts its ranks), or torchrun
on each of ``train.num_nodes`` machines (``infra/k8s-train-job.yaml``), and which one is rank 0."""

import os

from nightrec.config import TrainConfig
from nightrec.errors import ConfigError

# Strategies whose ranks torchrun starts on every machine; the spawning ones (ddp_spawn, ddp_fork,
# ddp_notebook) start all their ranks on the machine they run on, so they cannot span machines.
MULTI_NODE_STRATEGIES = ("ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")


def node_strategy(tc: TrainConfig, environ: dict[str, str] | None = None) -> str:
    """``train.strategy``; across machines (``train.num_nodes`` > 1) plain ``ddp``, "auto" included,
    in a process that torchrun started (or that has ``MASTER_ADDR`` and ``NODE_RANK`` set by hand)."""
    if tc.num_nodes == 1:
        return tc.strategy
    if tc.strategy not in ("auto", *MULTI_NODE_STRATEGIES):
        raise ConfigError(
            f"train.strategy: '{tc.strategy}' cannot span machines (train.num_nodes={tc.num_nodes}); use ddp or auto"
        )
    environ = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" not in environ and not {"MASTER_ADDR", "NODE_RANK"} <= environ.keys():
        # without a launcher this process would wait for the other machines' ranks until it timed out
        raise ConfigError(
            f"train.num_nodes={tc.num_nodes}: start the trainer with torchrun on every machine "
            "(infra/k8s-train-job.yaml); a nightly flow trains on one machine (train.num_nodes=1)"
        )
    return "ddp" if tc.strategy == "auto" else tc.strategy


def is_rank_zero() -> bool:
    """Global rank 0, the one process that writes the model folder: ``RANK`` where torchrun set it
    (every machine has a ``LOCAL_RANK`` 0), else local rank 0 of node 0 (Lightning's own launcher)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0
