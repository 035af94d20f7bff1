"""Privacy end to end on the demo night: pseudonymised, nothing of the input's ids in any file,
log or artifact; the same lists as without pseudonyms; `nightrec forget` and the night after it;
a key rotation; the key from a Prefect Secret block."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from pydantic import SecretStr

from nightrec.config import NightrecConfig, PrivacyConfig
from nightrec.errors import ConfigError
from nightrec.layout import FORGET_LOG, RETRAIN_REQUEST
from nightrec.privacy.pseudonyms import pseudonym
from tests.flow_fixtures import NIGHT1, NIGHT2, latest_table, run_night, small_config
from tests.privacy_scan import flow_run_text, id_pattern, scan_files

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[1]
KEY = "night-key-0123456789"
NEW_KEY = "rotated-key-9876543210"
USER = "u000003"


def _private(config: NightrecConfig, key: str = KEY) -> NightrecConfig:
    return config.model_copy(update={"privacy": PrivacyConfig(pseudonymize=True, key=SecretStr(key))})


def _cli(*args: str, key: str = KEY) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIGHTREC_PRIVACY__KEY": key, "NIGHTREC_PRIVACY__PSEUDONYMIZE": "true"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def _copy(config: NightrecConfig, to: Path) -> NightrecConfig:
    shutil.copytree(config.data_dir, to, symlinks=True)
    return config.model_copy(update={"data_dir": to})


@pytest.fixture(scope="module")
def raw_ids(demo_events) -> set[str]:
    events, _ = demo_events
    return set(pl.read_parquet(events / "*.parquet").get_column("user_id").drop_nulls().to_list())


@pytest.fixture(scope="module")
def private_night(prefect_harness, demo_events, tmp_path_factory):
    """The demo night with `privacy.pseudonymize` on; the same settings as `demo_night` otherwise."""
    events, _ = demo_events
    config = _private(small_config(tmp_path_factory.mktemp("private-night") / "data", events, min_history=3))
    state = run_night(config)
    assert state.is_completed(), state.message
    return config, state


def test_no_raw_id_or_key_in_any_file_log_or_artifact_of_a_pseudonymised_night(private_night, raw_ids):
    config, state = private_night
    pattern = id_pattern(raw_ids | {KEY})
    assert scan_files(config.data_dir, pattern) == {}
    texts = flow_run_text(state.state_details.flow_run_id, "artifacts: ")
    assert "promotion gate" in texts["logs"] and "report" in texts["artifacts"], "the scan read the run's logs"
    assert {where: set(pattern.findall(text)) for where, text in texts.items() if pattern.search(text)} == {}


def test_the_same_scan_finds_the_raw_ids_in_a_night_without_pseudonyms(demo_night, raw_ids):
    config, _ = demo_night
    found = scan_files(config.data_dir, id_pattern(raw_ids))
    night = f"runs/{NIGHT1.isoformat()}"
    assert {f"{night}/events.parquet", f"{night}/sequences/users.parquet", "nightrec.duckdb"} <= set(found)
    assert USER in found["nightrec.duckdb"]


def test_published_lists_are_the_same_with_and_without_pseudonyms(private_night, demo_night, raw_ids):
    private, plain = latest_table(private_night[0]), latest_table(demo_night[0])
    to_raw = {pseudonym(u, SecretStr(KEY)): u for u in raw_ids}
    assert set(private["user_id"]) <= set(to_raw), "the published table is keyed by pseudonym"
    mapped = private.with_columns(pl.col("user_id").replace_strict(to_raw)).sort("user_id", "rank")
    columns = ["run_date", "user_id", "rank", "item_id", "source"]
    assert mapped.select(columns).equals(plain.sort("user_id", "rank").select(columns))
    assert (mapped["score"] - plain.sort("user_id", "rank")["score"]).abs().max() < 1e-5


def test_recommend_hashes_the_id_it_is_given(private_night, demo_night):
    config, _ = private_night
    out = _cli("recommend", USER, "--data-dir", str(config.data_dir))
    assert out.returncode == 0, out.stderr
    assert "is new" not in out.stdout and f"user {USER}" in out.stdout
    first = latest_table(demo_night[0]).filter(pl.col("user_id") == USER, pl.col("rank") == 1)["item_id"][0]
    assert first in out.stdout


def test_forget_leaves_only_the_forget_log_and_the_next_night_leaves_the_user_out(
    private_night, night2_events, tmp_path
):
    config = _copy(private_night[0], tmp_path / "data")
    alias = pseudonym(USER, SecretStr(KEY))
    out = _cli("forget", USER, "--data-dir", str(config.data_dir))
    assert out.returncode == 0, out.stderr
    assert f"forgot user {alias}: deleted" in out.stdout and USER not in out.stdout
    assert (config.data_dir / "models" / RETRAIN_REQUEST).is_file()
    assert scan_files(config.data_dir, id_pattern({USER, alias})) == {FORGET_LOG: {alias}}

    # the source still holds the user's events: the forget log keeps them out
    config = config.model_copy(update={"events": str(night2_events)})
    state = run_night(config, NIGHT2)
    assert state.is_completed(), state.message
    table = latest_table(config)
    assert table["run_date"].max() == NIGHT2 and alias not in set(table["user_id"])
    assert "retrained from scratch (a user was forgotten" in state.result()["stages"]["train"]
    assert scan_files(config.data_dir, id_pattern({USER, alias})) == {FORGET_LOG: {alias}}


def test_forget_in_a_night_written_with_raw_ids_leaves_only_the_forget_log(night_copy):
    from flows.forget import forget_now

    config = night_copy.model_copy(update={"privacy": PrivacyConfig(key=SecretStr(KEY))})
    alias = pseudonym(USER, SecretStr(KEY))
    assert USER in str(scan_files(config.data_dir, id_pattern({USER})))
    report = forget_now(config, alias)
    assert report["rows"] and report["duckdb"]
    assert scan_files(config.data_dir, id_pattern({USER, alias})) == {FORGET_LOG: {alias}}


def test_the_forget_flow_takes_the_pseudonym_and_logs_counts_only(private_night, tmp_path):
    from flows.forget import forget

    config = _copy(private_night[0], tmp_path / "data")
    alias = pseudonym(USER, SecretStr(KEY))
    state = forget(pseudonym=alias, config=config, return_state=True)
    assert state.is_completed(), state.message
    assert sum(state.result()["rows"].values()) > 0
    texts = flow_run_text(state.state_details.flow_run_id, "deleted")
    assert "deleted" in texts["logs"] and USER not in str(texts) and KEY not in str(texts)
    assert scan_files(config.data_dir, id_pattern({USER, alias})) == {FORGET_LOG: {alias}}


def test_after_a_key_rotation_the_model_keeps_serving_and_the_next_night_is_rekeyed(
    private_night, night2_events, tmp_path
):
    config = _copy(private_night[0], tmp_path / "data")
    privacy = PrivacyConfig(pseudonymize=True, key=SecretStr(NEW_KEY), raw_retention_days=1)
    # retrain_every_days=2: the champion, trained on the old pseudonyms, serves the next night
    orchestration = config.orchestration.model_copy(update={"retrain_every_days": 2})
    config = config.model_copy(
        update={"events": str(night2_events), "privacy": privacy, "orchestration": orchestration}
    )
    state = run_night(config, NIGHT2)
    assert state.is_completed(), state.message
    assert "reused" in state.result()["stages"]["train"]
    table = latest_table(config)
    assert pseudonym(USER, SecretStr(NEW_KEY)) in set(table["user_id"])
    assert pseudonym(USER, SecretStr(KEY)) not in set(table["user_id"])
    assert "model" in set(table["source"])
    out = _cli("recommend", USER, "--data-dir", str(config.data_dir), key=NEW_KEY)
    assert out.returncode == 0 and "is new" not in out.stdout, out.stdout + out.stderr
    night1 = config.run_dir(NIGHT1)
    assert not (night1 / "events.parquet").exists() and (night1 / "validation.json").is_file(), "raw copies: 1 day"
    assert (config.run_dir(NIGHT2) / "events.parquet").is_file()


def test_the_key_can_come_from_a_prefect_secret_block(prefect_harness):
    from prefect.blocks.system import Secret

    from flows.secrets import with_key_from_block

    Secret(value=KEY).save("nightrec-privacy-key", overwrite=True)
    config = NightrecConfig(privacy={"key_block": "nightrec-privacy-key"})
    assert with_key_from_block(config).privacy.key.get_secret_value() == KEY
    with pytest.raises(ConfigError, match=r"privacy.key_block: no Prefect Secret block named 'absent'"):
        with_key_from_block(NightrecConfig(privacy={"key_block": "absent"}))
