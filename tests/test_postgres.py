"""Publishing to a real PostgreSQL server (``tests/postgres_server.sh``, sourced by ``make test``, starts one and exports
NIGHTREC_TEST_POSTGRES_URL): the swap, retention, a writer killed between staging and swap,
readers during publishes, an unreachable server and hostile names."""

import subprocess
import sys
from datetime import date, timedelta

import pytest
from pydantic import SecretStr

from nightrec.config import load_config
from tests.publish_fixtures import (
    ROOT,
    fingerprint,
    fresh_schema,
    kill_when,
    postgres_url,
    read_states,
    reader_code,
    start,
    subprocess_env,
    table,
    wait_ready,
)

URL = postgres_url()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not URL, reason="NIGHTREC_TEST_POSTGRES_URL is not set (run make test, which starts a PostgreSQL server)"
    ),
]
D1 = date(2026, 3, 10)
D2 = D1 + timedelta(days=1)


@pytest.fixture
def schema():
    """A fresh schema per test, dropped afterwards."""
    yield from fresh_schema(URL)


def _query(sql: str, params=None):
    import psycopg

    with psycopg.connect(URL) as con:
        return con.execute(sql, params).fetchall()


def _latest(schema: str) -> tuple:
    import polars as pl

    from nightrec.schema import RECOMMENDATION_SCHEMA

    rows = _query(f"SELECT * FROM {schema}.recommendations_latest")
    return fingerprint(pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA, orient="row"))


def test_publish_rerun_and_retention(schema):
    from nightrec.publish.postgres import publish_postgres

    where = publish_postgres(table(D1, 40), SecretStr(URL), D1, schema, keep=2)
    assert "@" not in where and where.endswith(f"{schema}.recommendations")
    publish_postgres(table(D1, 40, salt=2), URL, D1, schema, keep=2)
    assert _query(f"SELECT count(*) FROM {schema}.recommendations")[0][0] == 120
    assert _latest(schema) == fingerprint(table(D1, 40, salt=2))
    publish_postgres(table(D2, 30), URL, D2, schema, keep=2)
    publish_postgres(table(D2 + timedelta(days=1), 20), URL, D2 + timedelta(days=1), schema, keep=2)
    dates = [r[0] for r in _query(f"SELECT DISTINCT run_date FROM {schema}.recommendations ORDER BY 1")]
    assert dates == [D2, D2 + timedelta(days=1)]
    indexes = _query("SELECT indexdef FROM pg_indexes WHERE schemaname = %s", [schema])
    assert any("(user_id, rank)" in row[0] for row in indexes)


def test_publish_all_and_the_cli_read_from_postgres(schema, tmp_path):
    import polars as pl

    from nightrec.fallback.recommend import popularity_version
    from nightrec.publish.local import publish_all

    config = load_config(
        None,
        {"data_dir": str(tmp_path), "publish": {"postgres_url": URL, "postgres_schema": schema, "duckdb": False}},
        environ={},
    )
    fallback = pl.DataFrame(
        {"run_date": [D1] * 2, "rank": [1, 2], "item_id": ["top1", "top2"], "score": [2.0, 1.0]}
    ).with_columns(pl.lit(popularity_version(D1)).alias("model_version"))
    summary = publish_all(table(D1, 10), config, D1, fallback=fallback)
    assert summary["targets"]["postgres"].endswith(f"{schema}.recommendations")
    env = subprocess_env() | {"NIGHTREC_PUBLISH__POSTGRES_URL": URL, "NIGHTREC_PUBLISH__POSTGRES_SCHEMA": schema}
    known = subprocess.run(
        [sys.executable, "-m", "flows.cli", "recommend", "u00001", "--date", D1.isoformat()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert known.returncode == 0, known.stderr
    assert "source: model" in known.stdout and URL not in known.stdout + known.stderr
    new = subprocess.run(
        [sys.executable, "-m", "flows.cli", "recommend", "nobody"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert new.returncode == 1, new.stderr
    assert "is new" in new.stdout and "top1" in new.stdout and "top2" in new.stdout


KILLED_WRITER = """
import time
from datetime import date
from pathlib import Path
import nightrec.publish.postgres as pg
from tests.publish_fixtures import table

marker = Path({marker!r})
def pause(con, names, run_date, keep, with_fallback, txn=None):
    assert con.execute("SELECT count(*) FROM stage_recs").fetchone()[0] == 240
    marker.write_text("staged")
    time.sleep(600)
pg._swap = pause
pg.publish_postgres(table(date.fromisoformat({day!r}), 80, salt=5), {url!r}, date.fromisoformat({day!r}), {schema!r})
"""


def test_writer_killed_between_staging_and_swap_leaves_the_old_table(schema, tmp_path):
    from nightrec.publish.postgres import publish_postgres

    old = table(D1, 60)
    publish_postgres(old, URL, D1, schema)
    marker = tmp_path / "staged"
    code = KILLED_WRITER.format(marker=str(marker), day=D2.isoformat(), url=URL, schema=schema)
    kill_when(start(code, tmp_path, "pg_writer"), marker)
    assert _latest(schema) == fingerprint(old)
    assert _query(f"SELECT count(*) FROM {schema}.recommendations")[0][0] == old.height
    publish_postgres(table(D2, 10), URL, D2, schema)
    assert _latest(schema) == fingerprint(table(D2, 10))


KILLED_AFTER_PG_COMMIT = """
import time
from datetime import date
from pathlib import Path
import nightrec.publish.journal as journal
from nightrec.config import load_config
from nightrec.publish.local import publish_all
from tests.publish_fixtures import table

marker = Path({marker!r})
def pause(self):
    marker.write_text("postgres committed, journal not yet")
    time.sleep(600)
journal.PublishJournal.commit = pause
config = load_config(None, {config!r}, environ={{}})
publish_all(table(date.fromisoformat({day!r}), 30, salt=3), config, date.fromisoformat({day!r}))
"""


def test_a_publish_killed_after_postgres_committed_is_kept_so_targets_agree(schema, tmp_path):
    import duckdb

    from nightrec.publish.local import publish_all

    options = {"postgres_url": URL, "postgres_schema": schema, "retention_days": 2}
    settings = {"data_dir": str(tmp_path / "data"), "publish": options}
    config = load_config(None, settings, environ={})
    publish_all(table(D1, 20), config, D1)
    marker = tmp_path / "committed"
    code = KILLED_AFTER_PG_COMMIT.format(marker=str(marker), config=settings, day=D2.isoformat())
    kill_when(start(code, tmp_path, "writer"), marker)
    d3 = D2 + timedelta(days=1)
    summary = publish_all(table(d3, 10), config, d3)  # the next night finds the killed publish
    assert [line.split(": ")[1] for line in summary["recovered"]] == ["kept"]
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        local = con.sql("SELECT * FROM recommendations ORDER BY run_date, user_id, rank").fetchall()
    in_pg = _query(f"SELECT * FROM {schema}.recommendations ORDER BY run_date, user_id, rank")
    assert sorted({row[0] for row in local}) == [D2, d3] and local == in_pg, "PostgreSQL and DuckDB agree"


PG_READER = """
import psycopg
con = psycopg.connect({url!r}, autocommit=True)
def query():
    return con.execute(
        "SELECT count(*), count(DISTINCT user_id), CAST(max(run_date) AS text), round(sum(score)::numeric, 3)::float8 "
        "FROM {schema}.recommendations_latest"
    ).fetchone()
"""


def test_readers_see_the_complete_old_or_new_table_while_publishes_run(schema, tmp_path):
    from nightrec.publish.postgres import publish_postgres

    tables = [table(D1, 3000, k=5, salt=1), table(D1, 3000, k=5, salt=2), table(D2, 2000, k=5)]
    publish_postgres(tables[0], URL, D1, schema)
    reader = start(reader_code(PG_READER.format(url=URL, schema=schema)), tmp_path, "pg_reader")
    try:
        wait_ready(reader)
        for recs in tables[1:] + tables[:1]:
            publish_postgres(recs, URL, recs["run_date"][0], schema)
    finally:
        states = read_states(reader)
    assert len(states) >= 5 and len(set(states)) >= 2
    assert set(states) <= {fingerprint(t) for t in tables}, set(states) - {fingerprint(t) for t in tables}
