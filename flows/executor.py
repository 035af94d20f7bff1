"""Where the per-shard stages run (``orchestration.executor``): threads of the flow's process, a
temporary local Dask cluster, or an existing Dask scheduler, through Prefect task runners; and
the worker-side settings a deployment's stored config leaves to the process that runs it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_client
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import ValidationError

from nightrec.config import NightrecConfig, env_overrides
from nightrec.errors import ConfigError

# Where a run executes belongs to the process that runs it (a worker's environment), not to the
# deployment's stored parameters, which name the data.
WORKER_KEYS = ("executor", "dask_address", "dask_workers", "shards")


def with_worker_executor(config: NightrecConfig, environ: dict[str, str] | None = None) -> NightrecConfig:
    """``config`` with the ``orchestration`` keys of ``WORKER_KEYS`` that it does not set taken from
    this process's ``NIGHTREC_ORCHESTRATION__*`` variables: a deployment's ``config`` parameter
    names the data, the worker (``infra/docker-compose.yml``) says where the shards run."""
    orch = config.orchestration
    from_env = env_overrides(environ).get("orchestration", {})
    update = {k: from_env[k] for k in WORKER_KEYS if k in from_env and k not in orch.model_fields_set}
    if not update:
        return config
    try:
        merged = type(orch).model_validate({**orch.model_dump(), **update})
    except ValidationError as exc:
        raise ConfigError(f"NIGHTREC_ORCHESTRATION__*: {exc.errors()[0]['msg']}") from None
    return config.model_copy(update={"orchestration": merged})


def sharded(config: NightrecConfig) -> bool:
    return config.orchestration.shards > 1 or config.orchestration.executor == "dask"


@contextmanager
def shard_executor(config: NightrecConfig) -> Iterator[TaskRunner | None]:
    """The task runner the night's shard tasks are mapped on, open for the whole night; None
    with one shard on the local executor (the single-process stages run)."""
    orch = config.orchestration
    if not sharded(config):
        yield None
        return
    if orch.executor == "dask":
        from prefect_dask import DaskTaskRunner

        if orch.dask_address:
            runner = DaskTaskRunner(address=orch.dask_address)
        else:  # the workers report their task runs to this run's Prefect server
            api = str(get_client(sync_client=True).api_url)
            cluster = {"n_workers": orch.dask_workers, "threads_per_worker": 1, "processes": True}
            runner = DaskTaskRunner(cluster_kwargs={**cluster, "env": {"PREFECT_API_URL": api}})
    else:
        runner = ThreadPoolTaskRunner(max_workers=min(orch.shards, os.cpu_count() or 1))
    with runner:
        yield runner


def shard_results(futures: list[PrefectFuture], stage: str) -> list:
    """Every shard's result, or one error naming the shards that failed and why."""
    for future in futures:
        future.wait()
    states = [f.state for f in futures]
    failed = [(i, s) for i, s in enumerate(states) if not s.is_completed()]
    if failed:
        first, state = failed[0]
        which = ", ".join(str(i) for i, _ in failed)
        raise RuntimeError(
            f"{stage}: shard(s) {which} of {len(futures)} failed; shard {first}: {state.name}: {state.message}"
        )
    return [f.result() for f in futures]
