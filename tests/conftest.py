import os
from datetime import date, timedelta

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
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


@pytest.fixture(scope="session")
def night2_events(tmp_path_factory):
    """The demo log (same users, items, seed) one day longer: what the second night reads."""
    from nightrec.ingest.synthetic import SyntheticSpec, write_demo_data

    out = tmp_path_factory.mktemp("night2") / "events"
    write_demo_data(out, SyntheticSpec(users=200, items=120, days=6, seed=7, end_date=DEMO_END + timedelta(days=1)))
    return out
