"""Publishing to Parquet and DuckDB: idempotent reruns, retention, the manifest, a writer killed
mid-publish and readers in other processes while publishes run."""

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from nightrec.config import load_config
from nightrec.publish.local import (
    LATEST_VIEW,
    MANIFEST_FILE,
    PART_FILE,
    TABLE,
    apply_retention,
    file_sha256,
    partition_dir,
    publish_all,
    publish_duckdb,
    publish_parquet,
    published_dates,
)
from nightrec.publish.served import read_fallback
from tests.publish_fixtures import fingerprint, kill_when, read_states, reader_code, start, table, wait_ready

D1 = date(2026, 3, 10)
D2 = D1 + timedelta(days=1)


def _config(tmp_path: Path, **publish):
    return load_config(None, {"data_dir": str(tmp_path / "data"), "publish": publish}, environ={})


def _latest(db: Path) -> pl.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(f"SELECT * FROM {LATEST_VIEW}").pl()


def _count(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


def test_rerun_of_a_date_replaces_it_and_latest_follows_the_newest(tmp_path):
    config = _config(tmp_path)
    publish_all(table(D1, 50), config, D1)
    publish_all(table(D1, 50, salt=3), config, D1)
    assert _count(config.duckdb_path) == 150
    assert fingerprint(_latest(config.duckdb_path)) == fingerprint(table(D1, 50, salt=3))
    publish_all(table(D2, 40), config, D2)
    assert _count(config.duckdb_path) == 150 + 120
    assert fingerprint(_latest(config.duckdb_path)) == fingerprint(table(D2, 40))
    assert sorted(p.name for p in (config.data_dir / TABLE).iterdir()) == [
        f"run_date={D1}",
        f"run_date={D2}",
    ]


def test_retention_keeps_the_last_n_dates(tmp_path):
    config = _config(tmp_path, retention_days=2)
    for offset in range(4):
        summary = publish_all(table(D1 + timedelta(days=offset), 10), config, D1 + timedelta(days=offset))
    assert summary["removed_dates"] == [(D1 + timedelta(days=1)).isoformat()]
    assert published_dates(config.data_dir) == [D1 + timedelta(days=2), D1 + timedelta(days=3)]
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        dates = [r[0] for r in con.execute(f"SELECT DISTINCT run_date FROM {TABLE} ORDER BY 1").fetchall()]
    assert dates == [D1 + timedelta(days=2), D1 + timedelta(days=3)]
    assert apply_retention(config.data_dir, 1) == [D1 + timedelta(days=2)]


def test_manifest_counts_rows_users_sources_and_checksums_the_file(tmp_path):
    config = _config(tmp_path)
    recs = table(D1, 31, k=4)
    summary = publish_all(recs, config, D1)
    manifest = json.loads((partition_dir(config.data_dir, D1) / MANIFEST_FILE).read_text())
    assert manifest == summary["manifest"]
    assert manifest["rows"] == 124 and manifest["users"] == 31
    assert manifest["source_counts"] == {"model": 15 * 4, "popularity": 16 * 4}
    assert manifest["model_version"] == "gru@test"
    assert manifest["checksum"] == "sha256:" + file_sha256(partition_dir(config.data_dir, D1) / PART_FILE)


def test_empty_night_keeps_yesterdays_table(tmp_path):
    config = _config(tmp_path)
    publish_all(table(D1, 20), config, D1)
    before = _latest(config.duckdb_path)
    summary = publish_all(table(D2, 0), config, D2)
    assert "skipped" in summary and summary["rows"] == 0
    assert publish_parquet(table(D2, 0), config.data_dir, D2) is None
    publish_duckdb(config.data_dir, config.duckdb_path)
    assert _latest(config.duckdb_path).equals(before)


def test_fallback_list_is_published_beside_the_table(tmp_path):
    config = _config(tmp_path)
    fallback = pl.DataFrame(
        {"run_date": [D1] * 3, "rank": [1, 2, 3], "item_id": ["a", "b", "c"], "score": [3.0, 2.0, 1.0]}
    ).with_columns(pl.lit(f"popularity@{D1}").alias("model_version"))
    publish_all(table(D1, 5), config, D1, fallback=fallback)
    got = read_fallback(config.duckdb_path)
    assert got["item_id"].to_list() == ["a", "b", "c"] and got["rank"].to_list() == [1, 2, 3]


KILLED_WRITER = """
import time
from datetime import date
from pathlib import Path
import nightrec.publish.local as publish
from nightrec.config import load_config
from tests.publish_fixtures import table

marker = Path({marker!r})
def pause(staged, live):
    assert staged.is_file()
    marker.write_text("staged")
    time.sleep(600)
publish._swap_file = pause
config = load_config(None, {{"data_dir": {data_dir!r}}}, environ={{}})
publish.publish_all(table(date.fromisoformat({day!r}), 80, salt=5), config, date.fromisoformat({day!r}))
"""


@pytest.mark.integration
def test_writer_killed_between_staging_and_swap_leaves_the_old_table(tmp_path):
    config = _config(tmp_path)
    old = table(D1, 60)
    publish_all(old, config, D1)
    marker = tmp_path / "staged"
    code = KILLED_WRITER.format(marker=str(marker), data_dir=str(config.data_dir), day=D2.isoformat())
    kill_when(start(code, tmp_path, "writer"), marker)
    # The staged file was complete beside the live one; the live one is untouched and readable.
    assert [p for p in config.duckdb_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert fingerprint(_latest(config.duckdb_path)) == fingerprint(old)
    assert _count(config.duckdb_path) == old.height
    # The next publish clears the dead writer's leftovers.
    publish_all(table(D2, 10), config, D2)
    assert not [p for p in config.duckdb_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert fingerprint(_latest(config.duckdb_path)) == fingerprint(table(D2, 10))


DUCKDB_READER = """
import duckdb
def query():
    with duckdb.connect({db!r}, read_only=True) as con:
        rows = con.execute(
            "SELECT count(*), count(DISTINCT user_id), CAST(max(run_date) AS VARCHAR), round(sum(score), 3) "
            "FROM recommendations_latest"
        ).fetchone()
    return rows
"""


@pytest.mark.integration
def test_readers_see_the_complete_old_or_new_table_while_publishes_run(tmp_path):
    config = _config(tmp_path)
    tables = [table(D1, 3000, k=5, salt=s) for s in (1, 2)] + [table(D2, 2000, k=5)]
    publish_all(tables[0], config, D1)
    reader = start(reader_code(DUCKDB_READER.format(db=str(config.duckdb_path))), tmp_path, "reader")
    try:
        wait_ready(reader)
        for recs in tables[1:] + tables[:1]:
            publish_all(recs, config, recs["run_date"][0])
    finally:
        states = read_states(reader)
    expected = {fingerprint(t) for t in tables}
    assert len(states) >= 5 and len(set(states)) >= 2  # the reader ran across at least one swap
    assert set(states) <= expected, set(states) - expected


@pytest.mark.integration
def test_cli_prints_a_users_list_and_a_new_user_gets_the_fallback(tmp_path):
    import subprocess
    import sys

    from tests.publish_fixtures import ROOT, subprocess_env

    config = _config(tmp_path)
    fallback = pl.DataFrame(
        {"run_date": [D2] * 2, "rank": [1, 2], "item_id": ["hot1", "hot2"], "score": [2.0, 1.0]}
    ).with_columns(pl.lit(f"popularity@{D2}").alias("model_version"))
    publish_all(table(D1, 4), config, D1)
    publish_all(table(D2, 4, salt=7), config, D2, fallback=fallback)

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "flows.cli", "recommend", *args, "--data-dir", str(config.data_dir)]
        return subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)

    latest = cli("u00001")
    assert latest.returncode == 0, latest.stderr
    assert f"run {D2} - source: model" in latest.stdout and "i0008" in latest.stdout
    for flag in ("--date", "--run-date"):
        older = cli("u00002", flag, D1.isoformat())
        assert older.returncode == 0 and f"run {D1} - source: popularity" in older.stdout
    new = cli("someone-new")
    assert new.returncode == 1, new.stderr  # not in the table: the new-user list, and a non-zero exit
    assert "is new" in new.stdout and "hot1" in new.stdout and "hot2" in new.stdout
    missing = cli("u00001", "--date", "2020-01-01")
    assert missing.returncode == 2 and "nothing published for 2020-01-01" in missing.stderr


def test_cli_shows_ids_as_typed_never_as_markup_or_terminal_escapes(tmp_path):
    import subprocess
    import sys

    from tests.publish_fixtures import ROOT, subprocess_env

    config = _config(tmp_path)
    hostile = ["[/sale] shoes", "[link=https://evil.example]free[/link]", "\x1b[31mred\x1b[0m"]
    recs = table(D1, 2, k=3).with_columns(pl.Series("item_id", hostile * 2))
    fallback = pl.DataFrame(
        {"run_date": [D1] * 3, "rank": [1, 2, 3], "item_id": hostile, "score": [3.0, 2.0, 1.0]}
    ).with_columns(pl.lit(f"popularity@{D1}").alias("model_version"))
    publish_all(
        recs.with_columns(pl.lit("[bold]u").alias("user_id")).head(3).vstack(recs.tail(3)), config, D1, fallback
    )
    for user in ("[bold]u", "u00001", "someone-new"):
        command = [sys.executable, "-m", "flows.cli", "recommend", user, "--data-dir", str(config.data_dir)]
        out = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == (1 if user == "someone-new" else 0), out.stderr
        shown = " ".join(out.stdout.split())  # the table may wrap a long id over two lines
        assert "[/sale] shoes" in shown and "[link=https://evil.example]free[/link]" in shown.replace(" ", "")
        assert "\x1b" not in out.stdout and "\\x1b[31mred" in shown, out.stdout
    assert (
        "user [bold]u - run"
        in subprocess.run(
            [sys.executable, "-m", "flows.cli", "recommend", "[bold]u", "--data-dir", str(config.data_dir)],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
