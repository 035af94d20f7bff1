"""``nightrec serve`` (serve both deployments) and ``nightrec retrain`` (ask the server for a run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.app import ConfigOpt, DataDirOpt, EventsOpt, app, build_config, console
from nightrec.errors import ConfigError, NightrecError

if TYPE_CHECKING:
    from nightrec.config import NightrecConfig


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError("PREFECT_API_URL is not set: start a server (`make ui`) and export PREFECT_API_URL")
    return url


@app.command()
def serve(
    config_file: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    events: EventsOpt = None,
) -> None:
    """Serve the `nightly` (scheduled) and `retrain` (triggered) deployments against PREFECT_API_URL."""
    _api_url()
    config = build_config(config_file, data_dir=data_dir, events=events)
    if config.events is None:
        console.print("note: no input events configured; runs must pass a config with 'events'")
    from prefect import serve as prefect_serve

    from flows.deployments import build_deployments

    prefect_serve(*build_deployments(_resolve_paths(config)))


def _resolve_paths(config: NightrecConfig) -> NightrecConfig:
    """Relative paths must mean the same thing to runs started later, from another directory."""
    update = {"data_dir": Path(config.data_dir).resolve()}
    if config.events and Path(config.events).exists():
        update["events"] = str(Path(config.events).resolve())
    return config.model_copy(update=update)


@app.command("retrain")
def retrain_command(
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded on the run and in its report.")],
    events: EventsOpt = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run to finish; exit 1 unless it completes.")
    ] = False,
) -> None:
    """Start a `retrain` deployment run on the server in PREFECT_API_URL and print its UI link."""
    _api_url()
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_UI_URL

    from flows.deployments import RETRAIN_DEPLOYMENT, config_parameter

    parameters: dict = {"reason": reason}
    config = build_config(config_file, events=events, data_dir=data_dir)
    if config.events:
        parameters["config"] = config_parameter(_resolve_paths(config))
    elif data_dir is not None or config_file is not None:
        raise ConfigError("no input events: pass --events PATH or set NIGHTREC_EVENTS (or 'events' in the config file)")
    # else: the config the deployment was served with (its input source and data directory)
    try:
        run = run_deployment(RETRAIN_DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False, tags=["manual"])
    except ObjectNotFound:
        raise NightrecError(
            f"no deployment {RETRAIN_DEPLOYMENT} on {_api_url()}: start `nightrec serve` (or `make ui`)"
        ) from None
    ui = PREFECT_UI_URL.value() or _api_url().removesuffix("/api")
    console.print(f"retrain run {run.name} ({run.id}): {ui}/runs/flow-run/{run.id}", soft_wrap=True)
    if wait:
        state = wait_for_final_state(run.id)
        console.print(f"retrain run {run.id}: {state.name}{': ' + state.message if state.message else ''}")
        if not state.is_completed():
            raise typer.Exit(1)


def wait_for_final_state(flow_run_id, poll_s: float = 2.0, timeout_s: float | None = None):
    """Poll the API until the flow run reaches a final state; returns that state."""
    from prefect import get_client

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise NightrecError(f"flow run {flow_run_id} not finished after {timeout_s:.0f} s ({state.name})")
            time.sleep(poll_s)
