"""User shards and the Dask executor: a night split into 4 shards on a local Dask cluster of 2
worker processes publishes the table, the quarantine and the verdict of the single-process night,
row for row; a worker killed while scoring costs a retry of its shard, not the night."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flows.shards import KILL_DRILL
from nightrec.config import NightrecConfig
from nightrec.registry import read_json
from nightrec.shards import ROW, shard_of, split_by_user
from tests.conftest import DEMO_END
from tests.flow_fixtures import NIGHT1, latest_table, run_night, task_states

TABLE = ["user_id", "rank", "item_id", "score", "source"]


def test_shards_are_stable_whole_users_and_lose_no_row(tmp_path):
    users = pl.Series("user_id", [f"u{i}" for i in range(1000)] + [None, "u1"])
    first, again = shard_of(users, 4), shard_of(users.reverse(), 4).reverse()
    assert first.to_list() == again.to_list(), "the same id always lands in the same shard"
    assert first[1000] == 0, "a missing user id falls in shard 0"
    assert first[1001] == first[1]
    assert sorted(first.value_counts()["count"].to_list())[0] > 200, "shards are balanced"

    events = pl.DataFrame({"user_id": users, "item_id": [f"i{i % 7}" for i in range(users.len())]})
    events.write_parquet(tmp_path / "events.parquet")
    parts = split_by_user(tmp_path / "events.parquet", 4)
    merged = pl.concat([pl.read_parquet(p) for p in parts])
    assert merged.height == events.height, "rows in = rows over all parts"
    assert merged.sort(ROW).drop(ROW).equals(events), "the row positions restore the night's order"
    owners = merged.drop_nulls("user_id").group_by("user_id").agg(pl.col(ROW).count())
    for part in parts:
        ids = set(pl.read_parquet(part)["user_id"].drop_nulls().to_list())
        assert all(
            set(pl.read_parquet(q)["user_id"].drop_nulls().to_list()).isdisjoint(ids) for q in parts if q != part
        )
    assert owners.height == 1000


def _noisy_events(demo_events, out: Path) -> Path:
    """The demo log plus rows every rule kind quarantines: a copy, an unknown type, a missing user,
    a future timestamp and a bot's burst."""
    events_dir, _ = demo_events
    log = pl.concat([pl.read_parquet(p) for p in sorted(Path(events_dir).glob("*.parquet"))], how="diagonal_relaxed")
    when = datetime.combine(DEMO_END, datetime.min.time(), tzinfo=UTC) - timedelta(hours=3)
    row = log.row(0, named=True)
    noise = [
        {**row},
        {**row, "event_type": "teleport"},
        {**row, "user_id": None},
        {**row, "timestamp": when + timedelta(days=30)},
        *({**row, "user_id": "bot-1", "timestamp": when + timedelta(milliseconds=i)} for i in range(400)),
    ]
    noisy = pl.concat([log, pl.DataFrame(noise, schema=log.schema)])
    out.mkdir(parents=True)
    noisy.write_parquet(out / "events.parquet")
    return out


def _config(data_dir: Path, events: Path, **orchestration) -> NightrecConfig:
    """A closed-form model (the same fit on every run), so both nights serve the same scores."""
    return NightrecConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "events": str(events),
            "k": 10,
            "model": {"family": "item_cf"},
            "train": {"num_threads": 1},
            "orchestration": orchestration,
        }
    )


@pytest.fixture(scope="module")
def noisy_events(demo_events, tmp_path_factory):
    return _noisy_events(demo_events, tmp_path_factory.mktemp("noisy") / "events")


@pytest.fixture(scope="module")
def single_night(prefect_harness, noisy_events, tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("single") / "data", noisy_events)
    state = run_night(config, NIGHT1)
    assert state.is_completed(), state.message
    return config


def _night_outputs(config: NightrecConfig) -> dict:
    run = config.run_dir(NIGHT1)
    validation = read_json(run / "validation.json")
    return {
        "table": latest_table(config).select(TABLE),
        "quarantine": pl.read_parquet(run / "quarantine.parquet"),
        "clean": pl.read_parquet(run / "clean.parquet"),
        "sequences": {f.name: pl.read_parquet(f).to_dicts() for f in sorted((run / "sequences").glob("*.parquet"))},
        "verdict": {
            k: validation[k] for k in ("status", "rows_in", "rows_clean", "rows_quarantined", "by_reason", "failed")
        },
    }


def _assert_same_night(sharded: NightrecConfig, single: NightrecConfig) -> None:
    got, want = _night_outputs(sharded), _night_outputs(single)
    assert got["verdict"] == want["verdict"]
    assert want["quarantine"].height > 400, "the noisy rows were quarantined"
    assert got["quarantine"].equals(want["quarantine"])
    assert got["clean"].equals(want["clean"])
    assert got["sequences"] == want["sequences"], "the same sequences folder, file for file"
    assert got["table"].height == want["table"].height > 0
    assert got["table"].drop("score").equals(want["table"].drop("score"))
    assert got["table"]["score"].to_list() == pytest.approx(want["table"]["score"].to_list(), rel=1e-6)


@pytest.mark.integration
@pytest.mark.slow
def test_dask_night_with_four_shards_equals_the_single_process_night(single_night, noisy_events, tmp_path):
    config = _config(tmp_path / "data", noisy_events, executor="dask", shards=4, dask_workers=2)
    state = run_night(config, NIGHT1)
    assert state.is_completed(), state.message
    _assert_same_night(config, single_night)
    assert not (config.run_dir(NIGHT1) / "shards").exists(), "no copy of the night's events outlives the night"
    states = task_states(state)
    for stage in ("validate-shard", "sequences-shard", "score-shard", "fallback-shard", "sequences", "publish"):
        assert states[stage] == "Completed", (stage, states)


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_killed_while_scoring_costs_a_retry_not_the_night(single_night, noisy_events, tmp_path, monkeypatch):
    drill = tmp_path / "killed.txt"
    monkeypatch.setenv(KILL_DRILL, str(drill))  # the workers inherit it: the first scoring task kills its worker
    config = _config(tmp_path / "data", noisy_events, executor="dask", shards=4, dask_workers=2)
    state = run_night(config, NIGHT1)
    assert drill.is_file(), "a worker died during scoring"
    assert state.is_completed(), state.message
    _assert_same_night(config, single_night)


def test_the_worker_environment_says_where_shards_run_unless_the_parameter_does():
    from flows.executor import with_worker_executor
    from nightrec.errors import ConfigError

    worker = {"NIGHTREC_ORCHESTRATION__EXECUTOR": "dask", "NIGHTREC_ORCHESTRATION__SHARDS": "8"}
    stored = NightrecConfig.model_validate({"data_dir": "/d", "events": "/e", "orchestration": {"shards": 2}})
    merged = with_worker_executor(stored, worker).orchestration
    assert (merged.executor, merged.shards) == ("dask", 2), "the deployment's own setting wins"
    with pytest.raises(ConfigError, match="NIGHTREC_ORCHESTRATION"):
        with_worker_executor(stored, {"NIGHTREC_ORCHESTRATION__EXECUTOR": "spark"})


def test_raw_retention_removes_a_failed_nights_shard_parts(tmp_path):
    from nightrec.privacy.retention import apply_raw_retention

    parts = tmp_path / "runs" / "2026-03-01" / "shards" / "events"
    parts.mkdir(parents=True)
    (parts / "part-00000.parquet").write_bytes(b"rows")
    removed = apply_raw_retention(tmp_path, NIGHT1, keep_days=3)
    assert removed == ["runs/2026-03-01/shards"]
    assert not parts.exists()


@pytest.mark.integration
@pytest.mark.slow
def test_threads_with_segments_and_users_without_events_equal_the_single_process_night(
    prefect_harness, noisy_events, tmp_path
):
    """``executor: local`` with 3 shards: the segments are sized and ranked on the whole night and
    a user of the user table with no event tonight still gets exactly one list, in one shard."""
    log = pl.read_parquet(noisy_events / "events.parquet")
    ids = [*log.get_column("user_id").drop_nulls().unique().sort().to_list(), "table-only-1", "table-only-2"]
    users = tmp_path / "users.csv"
    pl.DataFrame({"user_id": ids, "segment": [f"s{i % 2}" for i in range(len(ids))]}).write_csv(users)
    popularity = {"users_file": str(users), "segment_column": "segment", "min_segment_users": 20}

    def night(name: str, **orchestration) -> NightrecConfig:
        config = _config(tmp_path / name, noisy_events, **orchestration)
        config = config.model_copy(update={"popularity": config.popularity.model_validate(popularity)})
        state = run_night(config, NIGHT1)
        assert state.is_completed(), state.message
        return config

    single, threads = night("single"), night("threads", shards=3)
    _assert_same_night(threads, single)
    table = latest_table(threads)
    assert table.filter(pl.col("user_id") == "table-only-1").height == 10, "one list for a user without events"
