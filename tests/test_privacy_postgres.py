"""Forgetting a user in the PostgreSQL table (``tests/postgres_server.sh`` starts the server)."""

from datetime import date, timedelta

import pytest
from pydantic import SecretStr

from nightrec.config import NightrecConfig
from nightrec.privacy.forget import forget_user
from nightrec.privacy.pseudonyms import pseudonym
from nightrec.publish.postgres import publish_postgres
from tests.publish_fixtures import fresh_schema, postgres_url, table

URL = postgres_url()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not URL, reason="NIGHTREC_TEST_POSTGRES_URL is not set (run make test, which starts a PostgreSQL server)"
    ),
]
KEY = SecretStr("pg-forget-key-0123456789")
D1 = date(2026, 3, 10)


@pytest.fixture
def schema():
    """A fresh schema per test, dropped afterwards."""
    yield from fresh_schema(URL)


def _user_rows(schema: str) -> list[str]:
    import psycopg

    with psycopg.connect(URL) as con:
        return [r[0] for r in con.execute(f"SELECT user_id FROM {schema}.recommendations").fetchall()]


@pytest.mark.parametrize("pseudonymised", [False, True], ids=["raw-ids", "pseudonyms"])
def test_forget_deletes_every_row_of_the_user_in_every_published_date(tmp_path, schema, pseudonymised):
    for day in (D1, D1 + timedelta(days=1)):
        recs = table(day, users=4, k=3)
        if pseudonymised:
            recs = recs.with_columns(recs["user_id"].map_elements(lambda u: pseudonym(u, KEY), return_dtype=str))
        publish_postgres(recs, URL, day, schema)
    config = NightrecConfig(
        data_dir=tmp_path, publish={"postgres_url": URL, "postgres_schema": schema}, privacy={"key": KEY}
    )

    report = forget_user(config, pseudonym("u00001", KEY))

    left = _user_rows(schema)
    assert report["postgres_rows"] == 6 and len(left) == 18
    assert "u00001" not in left and pseudonym("u00001", KEY) not in left
