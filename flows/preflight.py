"""Checks a run makes before any stage starts, so a setting that cannot work fails in one line
(exit 2) instead of after minutes of other stages or with a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nightrec.errors import ConfigError

if TYPE_CHECKING:
    from nightrec.config import NightrecConfig

API_TIMEOUT_S = 5.0


def api_url() -> str | None:
    """The Prefect API a run reports to: ``PREFECT_API_URL`` from the environment or the profile."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_api_reachable(url: str | None) -> None:
    """A configured Prefect API must answer at all; unset means an ephemeral server."""
    if not url:
        return
    import httpx

    try:
        # Any answer means a server is there; what it says (auth, Cloud's paths) is Prefect's to report.
        httpx.get(url.rstrip("/") + "/health", timeout=API_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"PREFECT_API_URL {url} is not reachable ({type(exc).__name__}): start the server (`make ui`) "
            "or unset PREFECT_API_URL to run on an ephemeral one"
        ) from None


def check_accelerator(config: NightrecConfig) -> None:
    """A GPU asked for must exist here (torch is only imported when one is asked for)."""
    if config.train.accelerator not in ("gpu", "cuda"):
        return
    from lightning_modules.train import trainer_settings

    trainer_settings(config)  # raises ConfigError naming the setting when the machine has no GPU


def check_one_machine(config: NightrecConfig) -> None:
    """The flow trains in a subprocess on its own machine; ``train.num_nodes`` > 1 needs torchrun on
    each machine (``infra/k8s-train-job.yaml``), so here it would fail every night's training."""
    if config.train.num_nodes > 1:
        from lightning_modules.launch import node_strategy  # imports no torch

        node_strategy(config.train)  # raises ConfigError naming the setting unless torchrun started us


def check_metadata(config: NightrecConfig) -> None:
    """The item and user tables are read after training: a bad one fails here, in one line."""
    from nightrec.fallback.history import read_user_table
    from nightrec.metadata.features import item_tokens
    from nightrec.metadata.tables import read_item_table

    if problem := config.metadata_problem():
        raise ConfigError(problem)
    items = read_item_table(config.metadata)
    if items is not None and not any(item_tokens(items, config.metadata.numeric_bins)):
        raise ConfigError(f"{config.metadata.items_file}: no item has an attribute value (metadata.items_file)")
    if config.popularity.users_file is not None:
        read_user_table(config.popularity.users_file, config.popularity.segment_column)


def preflight(config: NightrecConfig) -> None:
    """Everything that can be known to fail before the first stage: input columns, the API, the GPU."""
    from nightrec.ingest.readers import check_source
    from nightrec.ingest.runs import require_source
    from nightrec.lock import ensure_free

    check_source(require_source(config), config.format)
    check_api_reachable(api_url())
    check_accelerator(config)
    check_one_machine(config)
    check_metadata(config)
    ensure_free(config.data_dir)  # the flow holds the lock; this only makes a busy directory one line
