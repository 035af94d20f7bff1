import os
from datetime import date, timedelta

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as flows/__init__.py: threads yield on a shared machine
# Config tests need a clean environment; the test-only variables (a PostgreSQL URL) stay.
for _name in [n for n in os.environ if n.startswith("NIGHTREC_") and not n.startswith("NIGHTREC_TEST_")]:
    del os.environ[_name]

DEMO_END = date(2026, 3, 10)


@pytest.fixture(scope="session")
def prefect_harness():
    """One real Prefect engine (temporary database and server) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_events(tmp_path_factory):
    """A small clean synthetic log: 200 users, 120 items, 5 days ending DEMO_END."""
    from nightrec.ingest.synthetic import SyntheticSpec, write_demo_data

    out = tmp_path_factory.mktemp("demo") / "events"
    manifest = write_demo_data(out, SyntheticSpec(users=200, items=120, days=5, seed=7, end_date=DEMO_END))
    return out, manifest


def pytest_sessionfinish(session, exitstatus):
    """`make test` is the CI suite: a skipped test fails the run (its reason is printed by -ra).
    `make test-fast` sets NIGHTREC_ALLOW_SKIPS=1, since it deselects tiers on purpose."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and os.environ.get("NIGHTREC_ALLOW_SKIPS") != "1" and exitstatus == 0:
        reporter.write_line(
            f"{len(skipped)} test(s) skipped: a skip fails this suite (see the reasons above)", red=True
        )
        session.exitstatus = 1


@pytest.fixture(scope="session")
def demo_night(prefect_harness, demo_events, tmp_path_factory):
    """The one end-to-end demo night the flow, recommend, CLI and failure tests share: the nightly
    flow on the demo log with demo-sized settings. Returns (config, final state). Tests only read
    its data directory, or rerun the same night in place; a test that changes it uses `night_copy`."""
    from tests.flow_fixtures import run_night, small_config

    events, _ = demo_events
    config = small_config(tmp_path_factory.mktemp("demo-night") / "data", events, min_history=3)
    state = run_night(config)
    assert state.is_completed(), state.message
    return config, state


@pytest.fixture
def night_copy(demo_night, tmp_path):
    """A private copy of the demo night's data directory, for a test to break or move forward."""
    import shutil

    config, _ = demo_night
    shutil.copytree(config.data_dir, tmp_path / "data", symlinks=True)  # models/champion is a symlink
    return config.model_copy(update={"data_dir": tmp_path / "data"})


@pytest.fixture(scope="session")
def night2_events(tmp_path_factory):
    """The demo log (same users, items, seed) one day longer: what the second night reads."""
    from nightrec.ingest.synthetic import SyntheticSpec, write_demo_data

    out = tmp_path_factory.mktemp("night2") / "events"
    write_demo_data(out, SyntheticSpec(users=200, items=120, days=6, seed=7, end_date=DEMO_END + timedelta(days=1)))
    return out
