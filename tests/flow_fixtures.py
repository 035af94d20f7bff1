"""Helpers for the orchestration tests: a small fast config, running a night, reading the table
and the run's task states back through the Prefect API."""

from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from nightrec.config import NightrecConfig
from tests.conftest import DEMO_END

# A stand-in trainer that logs a little and exits 3 (tests/flow_crash_trainer.py).
CRASH_TRAINER = "tests.flow_crash_trainer"


NIGHT1 = DEMO_END + timedelta(days=1)
NIGHT2 = NIGHT1 + timedelta(days=1)


def small_config(data_dir: Path, events: Path, min_history: int | None = None, **orchestration) -> NightrecConfig:
    """Demo-sized settings: a tiny network trained for two epochs."""
    return NightrecConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "events": str(events),
            "k": 10,
            "model": {"embedding_dim": 16, "hidden_size": 16},
            "train": {"epochs": 2, "batch_size": 128, "num_threads": 1},
            "orchestration": orchestration,
            "popularity": {} if min_history is None else {"min_history": min_history},
        }
    )


def run_night(config: NightrecConfig, run_date: date | None = None, flow=None):
    """Run a flow to its final state without raising; returns the state."""
    from flows.nightly import nightly

    return (flow or nightly)(run_date=run_date, config=config, return_state=True)


def latest_table(config: NightrecConfig, relation: str = "recommendations_latest") -> pl.DataFrame:
    """What readers see: the DuckDB view ``recommendations_latest`` (or another relation), sorted."""
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        return con.sql(f"SELECT * FROM {relation} ORDER BY run_date, user_id, rank").pl()


def task_states(state) -> dict[str, str]:
    """Task name (without the run suffix) -> state name, for the flow run behind ``state``."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


def flow_run_artifacts(state) -> dict[str, str]:
    """Artifact key -> type for the flow run behind ``state``."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    return {a.key or f"<{a.type}>": a.type for a in artifacts}
