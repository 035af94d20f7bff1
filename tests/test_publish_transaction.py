"""Publishing is one transaction across targets: a failed or killed night leaves the Parquet
history and the DuckDB file byte-identical to before, retention included, and nothing but
complete partitions ever appears under ``recommendations/``."""

import os
import socket
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

import nightrec.publish.local as publish
from nightrec.config import load_config
from nightrec.errors import NightrecError
from nightrec.publish.local import TABLE, file_sha256, partition_dir, publish_all, published_dates
from tests.publish_fixtures import kill_when, start, table

D1 = date(2026, 3, 10)
D2 = D1 + timedelta(days=1)


def _config(tmp_path: Path, **publish_options):
    return load_config(None, {"data_dir": str(tmp_path / "data"), "publish": publish_options}, environ={})


def _snapshot(config) -> dict:
    """Every byte a reader can see: each file under ``recommendations/`` and the DuckDB file."""
    root = config.data_dir / TABLE
    files = {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        latest = con.sql("SELECT * FROM recommendations_latest ORDER BY user_id, rank").fetchall()
    return {"files": files, "duckdb": file_sha256(config.duckdb_path), "latest": latest}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nights_then(tmp_path, **failing_options):
    """Night 1 and night 2 published; returns the config of a failing night 3 (retention 1)."""
    good = _config(tmp_path)
    publish_all(table(D1, 20), good, D1)
    publish_all(table(D2, 20, salt=1), good, D2)
    return good, _config(tmp_path, retention_days=1, **failing_options)


def test_unreachable_postgres_with_retention_one_loses_no_night(tmp_path):
    good, failing = _two_nights_then(tmp_path, postgres_url=f"postgresql://u:p@127.0.0.1:{_free_port()}/db")
    before = _snapshot(good)
    with pytest.raises(NightrecError, match="does not answer"):
        publish_all(table(D2 + timedelta(days=1), 20, salt=2), failing, D2 + timedelta(days=1))
    assert _snapshot(good) == before
    assert published_dates(good.data_dir) == [D1, D2]
    # the next good night succeeds, and only then does retention apply
    publish_all(table(D2 + timedelta(days=1), 20, salt=2), _config(tmp_path, retention_days=1), D2 + timedelta(days=1))
    assert published_dates(good.data_dir) == [D2 + timedelta(days=1)]


def _refuse_duckdb_writes(monkeypatch):
    """A read-only DuckDB location. Root ignores directory modes, so the refusal is injected."""
    real = duckdb.connect

    def connect(database=":memory:", read_only=False, **kwargs):
        if not read_only:
            raise duckdb.IOException(f'Cannot open file "{database}": Read-only file system')
        return real(database, read_only=read_only, **kwargs)

    monkeypatch.setattr(publish.duckdb, "connect", connect)


def test_read_only_duckdb_location_with_retention_one_loses_no_night(tmp_path, monkeypatch):
    good, failing = _two_nights_then(tmp_path)
    before = _snapshot(good)
    if os.geteuid() == 0:
        _refuse_duckdb_writes(monkeypatch)
    else:
        good.data_dir.chmod(0o555)
    try:
        with pytest.raises((duckdb.Error, OSError)):
            publish_all(table(D2 + timedelta(days=1), 20, salt=2), failing, D2 + timedelta(days=1))
    finally:
        good.data_dir.chmod(0o755)
        monkeypatch.undo()
    assert _snapshot(good) == before
    assert published_dates(good.data_dir) == [D1, D2]


def test_failed_rerun_of_a_published_date_restores_that_partition(tmp_path, monkeypatch):
    good, _ = _two_nights_then(tmp_path)
    before = _snapshot(good)
    _refuse_duckdb_writes(monkeypatch)
    with pytest.raises(duckdb.Error):
        publish_all(table(D2, 30, salt=9), good, D2)
    monkeypatch.undo()
    assert _snapshot(good) == before


KILLED_BETWEEN_SWAPS = """
import time
from datetime import date
from pathlib import Path
import nightrec.publish.local as publish
from nightrec.config import load_config
from tests.publish_fixtures import table

marker = Path({marker!r})
def pause(staged, live):
    marker.write_text("parquet swapped, duckdb staged")
    time.sleep(600)
publish._swap_file = pause
config = load_config(None, {{"data_dir": {data_dir!r}, "publish": {{"retention_days": 1}}}}, environ={{}})
publish.publish_all(table(date.fromisoformat({day!r}), 40, salt=5), config, date.fromisoformat({day!r}))
"""


@pytest.mark.integration
def test_a_writer_killed_between_the_parquet_and_duckdb_swaps_is_rolled_back(tmp_path):
    from nightrec.publish.journal import STAGING_DIR, recover

    good, _ = _two_nights_then(tmp_path)
    before = _snapshot(good)
    marker = tmp_path / "swapped"
    for day in (D2, D2 + timedelta(days=1)):  # a rerun of a published date, then a new date
        marker.unlink(missing_ok=True)
        code = KILLED_BETWEEN_SWAPS.format(marker=str(marker), data_dir=str(good.data_dir), day=day.isoformat())
        kill_when(start(code, tmp_path, "writer"), marker)
        assert recover(good.data_dir), "the dead writer's journal is found"
        assert _snapshot(good) == before
    assert not list((good.data_dir / STAGING_DIR).iterdir())


def test_a_crashed_reruns_backup_is_removed_and_never_listed(tmp_path):
    good, _ = _two_nights_then(tmp_path)
    # what a crash during a same-date rerun left behind before the journal existed
    stale = good.data_dir / TABLE / f".bak-{partition_dir(good.data_dir, D2).name}-0123abcd"
    stale.mkdir()
    (stale / "part-0.parquet").write_bytes((partition_dir(good.data_dir, D2) / "part-0.parquet").read_bytes())
    publish_all(table(D2, 20, salt=4), good, D2)
    assert sorted(p.name for p in (good.data_dir / TABLE).iterdir()) == [f"run_date={D1}", f"run_date={D2}"]
    hive = duckdb.execute(
        f"SELECT count(*) FROM read_parquet('{good.data_dir / TABLE}/*/part-0.parquet', hive_partitioning = true)"
    ).fetchone()[0]
    assert hive == 2 * 20 * 3


def test_a_night_whose_users_saw_everything_still_publishes_the_new_user_list(tmp_path):
    import polars as pl

    from nightrec.publish.served import read_fallback

    config = _config(tmp_path)
    fallback = pl.DataFrame(
        {"run_date": [D1] * 2, "rank": [1, 2], "item_id": ["i1", "i2"], "score": [2.0, 1.0]}
    ).with_columns(pl.lit(f"popularity@{D1}").alias("model_version"))
    summary = publish_all(table(D1, 0), config, D1, fallback)
    assert "skipped" not in summary and published_dates(config.data_dir) == [D1]
    assert read_fallback(config.duckdb_path)["item_id"].to_list() == ["i1", "i2"]
    assert "skipped" in publish_all(table(D2, 0), config, D2), "nothing at all: the last run keeps serving"
