"""The Prefect server keeps the artifacts of the last N runs of a flow, not of every night."""

import uuid

import pytest

pytestmark = pytest.mark.integration


def _artifacts_by_run(flow_name: str) -> dict:
    """Flow run id -> sorted artifact keys (``<type>`` for unkeyed ones), over every run of the flow."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        ids = [run.id for run in runs]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    found: dict = {run_id: [] for run_id in ids}
    for artifact in artifacts:
        found[artifact.flow_run_id].append(artifact.key or f"<{artifact.type}>")
    return {run_id: sorted(keys) for run_id, keys in found.items()}


def test_a_run_deletes_the_artifacts_of_runs_before_the_last_n(prefect_harness):
    from prefect import flow
    from prefect.artifacts import Artifact, create_markdown_artifact, create_progress_artifact
    from prefect.runtime import flow_run

    from flows.report import prune_artifacts

    name = f"nightly-{uuid.uuid4().hex[:8]}"  # its own flow: other tests' runs are not pruned
    key = f"{name}-report"

    @flow(name=name)
    def night(i: int) -> tuple:
        create_progress_artifact(progress=100.0)
        create_markdown_artifact(key=key, markdown=f"night {i}")
        return uuid.UUID(flow_run.id), prune_artifacts(name, keep=2, batch=1)

    runs = [night(i) for i in range(4)]
    assert [deleted for _, deleted in runs] == [0, 0, 2, 2]
    left = _artifacts_by_run(name)
    assert len(left) == 4, "the runs themselves stay"
    assert {run_id for run_id, keys in left.items() if keys} == {runs[2][0], runs[3][0]}
    assert left[runs[3][0]] == sorted([key, "<progress>"])
    assert "night 3" in Artifact.get(key).data, "the key still shows the latest night"
