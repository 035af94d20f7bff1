"""Publishing an intra-day refresh (``nightrec.publish.refresh``): the refreshed users' lists
replace theirs in ``recommendations_latest``, whole, while every other row and the nightly's
files stay byte for byte as published; later nightlies and retention keep a day's refreshes
with their date; a refresh killed at the swap leaves nothing behind once ``recover`` ran, and a
reader never sees a user with a mix of two runs. PostgreSQL tests need the server of
``tests/postgres_server.sh`` (as ``tests/test_postgres.py``)."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from nightrec.config import load_config
from nightrec.errors import NightrecError
from nightrec.publish.journal import STAGING_DIR, recover
from nightrec.publish.local import (
    LATEST_VIEW,
    PART_FILE,
    TABLE,
    file_sha256,
    partition_dir,
    postgres_committed,
    publish_all,
    publish_duckdb,
)
from nightrec.publish.refresh import REFRESH_TABLE, publish_refresh
from nightrec.publish.refresh_files import refresh_dir
from nightrec.schema import RECOMMENDATION_SCHEMA, REFRESHED_AT, USER_ID, conform
from tests.publish_fixtures import (
    fingerprint,
    fresh_schema,
    kill_when,
    postgres_url,
    read_states,
    reader_code,
    start,
    table,
    wait_ready,
)

D1 = date(2026, 3, 10)
D2 = D1 + timedelta(days=1)
T1 = datetime(2026, 3, 10, 11, 5, 0, 250_000, tzinfo=UTC)
T2 = datetime(2026, 3, 10, 15, 30, 0, 123_456, tzinfo=UTC)
T3 = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
USERS, K = 20, 3


def _config(tmp_path: Path, **publish):
    return load_config(None, {"data_dir": str(tmp_path / "data"), "publish": publish}, environ={})


def _refresh(users: list[int], salt: int, run_date: date = D1) -> pl.DataFrame:
    """Complete new lists (``K`` rows) for ``users``, made by a refresh model."""
    recs = table(run_date, USERS, k=K, salt=salt).filter(pl.col(USER_ID).is_in([f"u{u:05d}" for u in users]))
    return recs.with_columns(pl.lit("model").alias("source"), pl.lit(f"gru@refresh-{salt}").alias("model_version"))


def _served(db: Path, relation: str = LATEST_VIEW) -> pl.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(f"SELECT * FROM {relation} ORDER BY run_date, user_id, rank").pl()


def _stamped(recs: pl.DataFrame, at: datetime) -> pl.DataFrame:
    return conform(recs.with_columns(pl.lit(at).alias(REFRESHED_AT))).sort("run_date", USER_ID, "rank")


def _laid_over(base: pl.DataFrame, recs: pl.DataFrame, at: datetime) -> pl.DataFrame:
    """``base`` with the lists of ``recs``' users replaced by theirs: what latest must serve."""
    kept = base.filter(~pl.col(USER_ID).is_in(recs[USER_ID].unique().implode()))
    return pl.concat([kept, _stamped(recs, at)]).sort("run_date", USER_ID, "rank")


def _files(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's checksum, or ``dir``."""
    return {str(p.relative_to(root)): file_sha256(p) if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def _snapshot(config) -> dict:
    """Every byte a reader can see: the nightly files, the refresh files and the DuckDB file."""
    return {
        "nightly": _files(config.data_dir / TABLE),
        "refresh": _files(config.data_dir / REFRESH_TABLE),
        "duckdb": file_sha256(config.duckdb_path),
        "latest": _served(config.duckdb_path).rows(),
    }


def test_a_refresh_serves_its_users_new_lists_and_every_other_row_as_the_nightly_published(tmp_path):
    config = _config(tmp_path)
    publish_all(table(D1, USERS, k=K), config, D1)
    nightly_files, nightly = _files(config.data_dir / TABLE), _served(config.duckdb_path)
    part = partition_dir(config.data_dir, D1) / PART_FILE
    part_bytes = part.read_bytes()
    recs = _refresh([3, 8], salt=7)

    summary = publish_refresh(recs, config, D1, T2)

    refreshed = pl.col(USER_ID).is_in(["u00003", "u00008"])
    latest = _served(config.duckdb_path)
    assert latest.filter(refreshed).equals(_stamped(recs, T2))
    assert latest.filter(refreshed)[REFRESHED_AT].to_list() == [T2] * 2 * K
    assert set(latest.filter(refreshed)["model_version"]) == {"gru@refresh-7"}
    assert latest.filter(~refreshed).equals(nightly.filter(~refreshed)), "untouched users: the nightly's rows"
    assert latest.filter(~refreshed)[REFRESHED_AT].null_count() == (USERS - 2) * K
    assert part.read_bytes() == part_bytes and _files(config.data_dir / TABLE) == nightly_files
    written = refresh_dir(config.data_dir, D1) / "refresh-20260310T153000.123456Z.parquet"
    assert summary["targets"]["parquet"] == str(written)
    assert pl.read_parquet(written).equals(_stamped(recs, T2))
    assert summary["rows"] == 2 * K and summary["users"] == 2 and summary["refreshed_at"] == T2.isoformat()
    assert summary["targets"]["duckdb"] == str(config.duckdb_path)
    assert not list((config.data_dir / STAGING_DIR).iterdir()), "the journal is closed"


def test_overlapping_refreshes_serve_each_user_the_newest_whole_list(tmp_path):
    config = _config(tmp_path)
    publish_all(table(D1, USERS, k=K), config, D1)
    nightly = _served(config.duckdb_path)
    first, second = _refresh([1, 2, 3], salt=4), _refresh([3, 4], salt=5)
    publish_refresh(first, config, D1, T1)
    publish_refresh(second, config, D1, T2)

    latest = _served(config.duckdb_path)
    assert latest.equals(_laid_over(_laid_over(nightly, first, T1), second, T2))
    per_user = latest.group_by(USER_ID).agg(pl.len(), pl.col(REFRESHED_AT).unique().alias("runs"))
    assert per_user["len"].to_list() == [K] * USERS and per_user["runs"].list.len().to_list() == [1] * USERS
    when = dict(zip(per_user[USER_ID], per_user["runs"].list.first(), strict=True))
    assert [when["u00001"], when["u00002"], when["u00003"], when["u00004"], when["u00005"]] == [T1, T1, T2, T2, None]
    # the swapped copy holds what a rebuild from the files holds
    publish_duckdb(config.data_dir, tmp_path / "rebuilt.duckdb")
    assert _served(tmp_path / "rebuilt.duckdb", TABLE).equals(_served(config.duckdb_path, TABLE))


def test_later_nightlies_keep_a_days_refreshes_until_retention_drops_them_together(tmp_path):
    config = _config(tmp_path)
    publish_all(table(D1, USERS, k=K), config, D1)
    publish_refresh(_refresh([2, 5], salt=6), config, D1, T2)
    day_one = _served(config.duckdb_path, TABLE)

    publish_all(table(D2, USERS, k=K, salt=1), config, D2)
    latest = _served(config.duckdb_path)
    assert set(latest["run_date"]) == {D2} and latest[REFRESHED_AT].null_count() == latest.height
    kept = _served(config.duckdb_path, TABLE).filter(pl.col("run_date") == D1)
    assert kept.equals(day_one), "the rebuild applied D1's refresh"

    d3 = D2 + timedelta(days=1)
    publish_all(table(d3, USERS, k=K, salt=2), _config(tmp_path, retention_days=1), d3)
    assert not refresh_dir(config.data_dir, D1).exists() and not partition_dir(config.data_dir, D1).exists()
    assert set(_served(config.duckdb_path, TABLE)["run_date"]) == {d3}


def test_a_refresh_is_refused_without_its_night_for_another_night_or_older_than_the_last(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(NightrecError, match="no nightly is published for that date"):
        publish_refresh(_refresh([1], salt=2), config, D1, T1)
    assert not (config.data_dir / REFRESH_TABLE).exists() and not config.duckdb_path.exists()

    publish_all(table(D1, USERS, k=K), config, D1)
    publish_refresh(_refresh([1], salt=2), config, D1, T2)
    before = _snapshot(config)
    with pytest.raises(NightrecError, match="other run date"):
        publish_refresh(pl.concat([_refresh([1], salt=3), _refresh([2], salt=3, run_date=D2)]), config, D1, T3)
    with pytest.raises(NightrecError, match="older than the refresh already published"):
        publish_refresh(_refresh([1], salt=3), config, D1, T1)
    with pytest.raises(NightrecError, match="time zone"):
        publish_refresh(_refresh([1], salt=3), config, D1, T3.replace(tzinfo=None))
    assert _snapshot(config) == before


def test_a_table_published_before_refreshed_at_existed_is_refreshed_and_rebuilt(tmp_path):
    config = _config(tmp_path)
    old = table(D1, USERS, k=K).drop(REFRESHED_AT)  # the columns an earlier version wrote
    partition_dir(config.data_dir, D1).mkdir(parents=True)
    old.write_parquet(partition_dir(config.data_dir, D1) / PART_FILE)
    publish_duckdb(config.data_dir, config.duckdb_path)
    with duckdb.connect(str(config.duckdb_path)) as con:
        con.execute(f"ALTER TABLE {TABLE} DROP COLUMN {REFRESHED_AT}")

    recs = _refresh([4], salt=3)
    publish_refresh(recs, config, D1, T2)
    assert _served(config.duckdb_path).equals(_laid_over(conform(old), recs, T2))
    publish_all(table(D2, USERS, k=K), config, D2)
    kept = _served(config.duckdb_path, TABLE).filter(pl.col("run_date") == D1)
    assert kept.equals(_laid_over(conform(old), recs, T2))


LATEST_READER = """
import duckdb
def query():
    with duckdb.connect({db!r}, read_only=True) as con:
        whole = con.execute(
            "SELECT count(*), count(DISTINCT user_id), CAST(max(run_date) AS VARCHAR), round(sum(score), 3) "
            "FROM {view}"
        ).fetchone()
        mixed = con.execute(
            "SELECT count(*) FROM (SELECT user_id FROM {view} GROUP BY user_id HAVING count(*) <> {k} "
            "OR count(DISTINCT refreshed_at) > 1 OR count(refreshed_at) NOT IN (0, count(*)))"
        ).fetchone()
    return [*whole, mixed[0]]
"""

KILLED_REFRESH = """
import time
from datetime import date, datetime
from pathlib import Path
import duckdb
import polars as pl
import nightrec.publish.journal as journal
import nightrec.publish.local as local
import nightrec.publish.postgres as pg
from nightrec.config import load_config
from nightrec.publish.refresh import publish_refresh
from tests.publish_fixtures import table

marker, at = Path({marker!r}), datetime.fromisoformat({at!r})
def before_swap(staged, live):
    with duckdb.connect(str(staged), read_only=True) as con:
        new = con.execute("SELECT count(*) FROM recommendations WHERE refreshed_at = ?", [at]).fetchone()[0]
    assert new == {rows}, new
    marker.write_text("the copy holds the refresh, the live file does not")
    time.sleep(600)
def in_postgres(con, names, run_date, txn):
    marker.write_text("PostgreSQL deleted and inserted, not committed")
    time.sleep(600)
def before_commit(self):
    marker.write_text("every target swapped, the journal not committed")
    time.sleep(600)
if {point!r} == "before the swap":
    local._swap_file = before_swap
elif {point!r} == "inside postgres":
    pg._record = in_postgres
else:
    journal.PublishJournal.commit = before_commit
config = load_config(None, {settings!r}, environ={{}})
recs = table(date.fromisoformat({day!r}), {users}, k={k}, salt=9).filter(pl.col("user_id").is_in({ids!r}))
publish_refresh(recs, config, date.fromisoformat({day!r}), at)
"""


def _killed_refresh(tmp_path: Path, settings: dict, point: str, users: list[int]) -> pl.DataFrame:
    """Run a refresh of ``users`` (salt 9, at T3) in a subprocess and SIGKILL it at ``point``."""
    marker = tmp_path / "paused"
    marker.unlink(missing_ok=True)
    ids = [f"u{u:05d}" for u in users]
    code = KILLED_REFRESH.format(
        marker=str(marker), at=T3.isoformat(), point=point, settings=settings, day=D1.isoformat(),
        users=USERS, k=K, ids=ids, rows=len(ids) * K,
    )  # fmt: skip
    kill_when(start(code, tmp_path, "refresher"), marker)
    return table(D1, USERS, k=K, salt=9).filter(pl.col(USER_ID).is_in(ids))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("point", "earlier_refresh"),
    [("before the swap", False), ("before the swap", True), ("after the swap", False), ("after the swap", True)],
)
def test_a_refresh_killed_at_the_swap_is_undone_and_readers_never_see_a_mixed_list(tmp_path, point, earlier_refresh):
    settings = {"data_dir": str(tmp_path / "data")}
    config = load_config(None, settings, environ={})
    publish_all(table(D1, USERS, k=K), config, D1)
    if earlier_refresh:  # the refresh folder exists and must come back as it was
        publish_refresh(_refresh([1, 2], salt=4), config, D1, T1)
    before, served = _snapshot(config), _served(config.duckdb_path)
    reader = start(reader_code(LATEST_READER.format(db=str(config.duckdb_path), view=LATEST_VIEW, k=K)), tmp_path, "r")
    try:
        wait_ready(reader)
        recs = _killed_refresh(tmp_path, settings, point, users=[2, 3])
        between = _served(config.duckdb_path)
        for path in (config.data_dir / REFRESH_TABLE).rglob("*.parquet"):  # complete files, whole lists
            assert set(pl.read_parquet(path).group_by(USER_ID).len()["len"]) == {K}
        assert [line.split(": ")[1] for line in recover(config.data_dir)] == ["rolled back"]
    finally:
        states = read_states(reader)
    assert _snapshot(config) == before
    swapped = _laid_over(served, recs, T3)
    assert between.equals(served if point == "before the swap" else swapped)
    # every query saw the old table or the refreshed one, and no user with a mixed list (the 0)
    allowed = {(*fingerprint(served), 0)} | ({(*fingerprint(swapped), 0)} if point == "after the swap" else set())
    assert states and set(states) <= allowed, set(states) - allowed
    # the next refresh publishes and clears what the killed one left beside the DuckDB file
    publish_refresh(_refresh([5], salt=6), config, D1, T3 + timedelta(minutes=1))
    assert not [p for p in config.duckdb_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not list((config.data_dir / STAGING_DIR).iterdir())


PG_URL = postgres_url()
needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="NIGHTREC_TEST_POSTGRES_URL is not set (run make test, which starts a PostgreSQL server)"
)


@pytest.fixture
def pg_schema():
    """A fresh schema per test, dropped afterwards."""
    yield from fresh_schema(PG_URL)


def _pg(sql: str) -> list:
    import psycopg

    with psycopg.connect(PG_URL) as con:
        return con.execute(sql).fetchall()


def _pg_served(schema: str, relation: str = "recommendations_latest") -> pl.DataFrame:
    rows = _pg(f"SELECT * FROM {schema}.{relation} ORDER BY run_date, user_id, rank")
    return pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA, orient="row")


def _pg_settings(tmp_path: Path, schema: str) -> dict:
    return {"data_dir": str(tmp_path / "data"), "publish": {"postgres_url": PG_URL, "postgres_schema": schema}}


@pytest.mark.integration
@needs_postgres
def test_postgres_replaces_the_refreshed_users_lists_in_one_transaction(pg_schema, tmp_path, monkeypatch):
    import nightrec.publish.postgres as pg

    config = load_config(None, _pg_settings(tmp_path, pg_schema), environ={})
    publish_all(table(D1, USERS, k=K), config, D1)
    nightly, files = _pg_served(pg_schema), _snapshot(config)
    recs = _refresh([3, 8], salt=7)

    def fail_at_the_end(con, names, run_date, txn):
        seen = con.execute(f"SELECT count(*) FROM {pg_schema}.recommendations WHERE refreshed_at IS NOT NULL")
        assert seen.fetchone()[0] == 2 * K, "deleted and inserted, not yet committed"
        raise RuntimeError("injected before the commit")

    monkeypatch.setattr(pg, "_record", fail_at_the_end)
    with pytest.raises(RuntimeError, match="injected"):
        publish_refresh(recs, config, D1, T2)
    monkeypatch.undo()
    assert _pg_served(pg_schema).equals(nightly) and _snapshot(config) == files, "every target as before"

    summary = publish_refresh(recs, config, D1, T2)
    assert summary["targets"]["postgres"].endswith(f"{pg_schema}.recommendations")
    assert _pg_served(pg_schema).equals(_laid_over(nightly, recs, T2))
    assert _pg_served(pg_schema).equals(_served(config.duckdb_path)), "PostgreSQL and DuckDB serve the same rows"
    assert _pg(f"SELECT count(*) FROM {pg_schema}.recommendations_publish_log")[0][0] == 2


@pytest.mark.integration
@needs_postgres
@pytest.mark.parametrize(("point", "outcome"), [("inside postgres", "rolled back"), ("after the swap", "kept")])
def test_a_refresh_killed_around_postgres_commit_is_kept_only_if_committed(pg_schema, tmp_path, point, outcome):
    settings = _pg_settings(tmp_path, pg_schema)
    config = load_config(None, settings, environ={})
    publish_all(table(D1, USERS, k=K), config, D1)
    nightly, before = _pg_served(pg_schema), _snapshot(config)
    recs = _killed_refresh(tmp_path, settings, point, users=[2, 3])
    recovered = recover(config.data_dir, postgres_committed(config))
    assert [line.split(": ")[1] for line in recovered] == [outcome]
    if outcome == "rolled back":
        assert _snapshot(config) == before and _pg_served(pg_schema).equals(nightly)
    else:
        assert _served(config.duckdb_path).equals(_laid_over(nightly, recs, T3))
        assert _pg_served(pg_schema).equals(_served(config.duckdb_path)), "the kept refresh is in every target"


@pytest.mark.integration
@needs_postgres
def test_a_postgres_table_of_an_earlier_version_gains_refreshed_at_in_table_and_view(pg_schema, tmp_path):
    import psycopg

    old_columns = "run_date date, user_id text, rank integer, item_id text, score double precision, "
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {pg_schema}")
        con.execute(f"CREATE TABLE {pg_schema}.recommendations ({old_columns} source text, model_version text)")
        con.execute(
            f"CREATE VIEW {pg_schema}.recommendations_latest AS SELECT * FROM {pg_schema}.recommendations "
            f"WHERE run_date = (SELECT max(run_date) FROM {pg_schema}.recommendations)"
        )
    config = load_config(None, _pg_settings(tmp_path, pg_schema), environ={})
    publish_all(table(D1, USERS, k=K), config, D1)
    recs = _refresh([6], salt=2)
    publish_refresh(recs, config, D1, T2)
    assert _pg_served(pg_schema).equals(_laid_over(conform(table(D1, USERS, k=K)), recs, T2))
