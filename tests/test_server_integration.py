"""A real `prefect server start` on a free local port, `nightrec serve` in a subprocess, and runs
driven through the API: `nightrec retrain` creates and completes a run with its artifacts, a
missed nightly slot is not replayed, and the schedule's runs sit at 02:00 in the configured zone.
"""

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flows.local_server import LocalServer, start_serving, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

TZ = "Europe/Berlin"


def _wait(what, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def served(demo_events, tmp_path_factory):
    """The server, then the serving process; stopped in the reverse order."""
    events, _ = demo_events
    root = tmp_path_factory.mktemp("served")
    settings = {
        "PREFECT_HOME": str(root / "prefect-home"),
        "NIGHTREC_ORCHESTRATION__TIMEZONE": TZ,
        "NIGHTREC_TRAIN__EPOCHS": "1",
        "NIGHTREC_MODEL__HIDDEN_SIZE": "16",
        "NIGHTREC_MODEL__EMBEDDING_DIM": "16",
        "NIGHTREC_K": "10",
    }
    server_log = open(root / "server.log", "w")  # noqa: SIM115 (closed below)
    serve_log = open(root / "serve.log", "w")  # noqa: SIM115
    server = LocalServer(env=settings, log=server_log, ui=False).start(timeout_s=180)
    serving = start_serving(server, ["--data-dir", str(root / "data"), "--events", str(events)], log=serve_log)
    try:
        yield server, root
    finally:
        stop_process(serving)  # the serving process first: it must not outlive its API
        server.stop()
        server_log.close()
        serve_log.close()
        assert serving.poll() is not None and server.proc.poll() is not None


def test_retrain_through_the_api_completes_with_artifacts_and_missed_nights_are_not_replayed(served):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, DeploymentFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    server, root = served
    # this server, even when the session's test harness has set another API URL
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
        deployments = _wait(
            "the three deployments",
            lambda: {d.name: d for d in client.read_deployments()} if len(client.read_deployments()) == 3 else None,
            timeout_s=180,
        )
        assert set(deployments) == {"nightly", "retrain", "refresh"}

        # a nightly slot two days old (the serving process was down): cancelled, not replayed;
        # created first so that it runs while the retrain does
        missed = client.create_flow_run_from_deployment(
            deployments["nightly"].id, state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(days=2))
        )
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "retrain", "--reason", "integration test", "--wait"],
            env=server.client_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr + (root / "serve.log").read_text()[-3000:]
        assert f"{server.ui_url}/runs/flow-run/" in done.stdout

        (run,) = client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployments["retrain"].id]}))
        assert run.state.is_completed(), run.state
        assert run.parameters["reason"] == "integration test"
        assert run.name.startswith("retrain-20")
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        keys = {a.key for a in artifacts if a.key}
        assert {"retrain-report", "retrain-metrics", "retrain-published"} <= keys, keys
        report = next(a for a in artifacts if a.key == "retrain-report").data
        assert "Reason: integration test" in report and "retrained from scratch" in report
        assert (root / "data" / "models" / "champion").is_symlink()

        final = _wait(
            "the missed run to finish", lambda: (s := client.read_flow_run(missed.id).state).is_final() and s, 120
        )
        assert final.is_cancelled(), final
        assert "not replayed" in final.message

        # the scheduler's own runs: 02:00 in the configured zone
        upcoming = _wait(
            "scheduled nightly runs",
            lambda: [
                r
                for r in client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id={"any_": [deployments["nightly"].id]})
                )
                if r.auto_scheduled
            ],
            timeout_s=90,
            every_s=3,
        )
        for r in upcoming:
            local = r.expected_start_time.astimezone(ZoneInfo(TZ))
            assert (local.hour, local.minute) == (2, 0) or local.hour == 3, local  # 3:00 only on a spring-forward night
