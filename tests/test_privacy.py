"""Privacy settings and the pieces behind them, on tiny frames: keyed pseudonyms, a key that only
the environment (or a Secret block) may set, the forget log at ingest, raw-copy retention, forgetting
in files, and external ids on publish."""

import hashlib
import hmac
import json
from datetime import date

import polars as pl
import pytest
from pydantic import SecretStr

from nightrec.config import NightrecConfig, PrivacyConfig, load_config
from nightrec.errors import ConfigError
from nightrec.layout import USERS_FILE
from nightrec.privacy.forget import forget_user
from nightrec.privacy.forget_log import drop_forgotten, read_forget_log, record_request
from nightrec.privacy.ingest import protect_events
from nightrec.privacy.pseudonyms import key_id, pseudonym, pseudonymize, with_external_ids
from nightrec.privacy.retention import apply_raw_retention
from nightrec.registry import requested_retrain

KEY = "k" * 20
OTHER_KEY = "o" * 20


def _events(users=("alice", "bob", "alice")) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": list(users),
            "item_id": [f"i{n}" for n in range(len(users))],
            "session_id": [f"{u}-s1" for u in users],
        }
    )


def test_a_pseudonym_is_the_hmac_sha256_of_the_id_under_the_key():
    expected = hmac.new(KEY.encode(), b"alice", hashlib.sha256).hexdigest()[:32]
    assert pseudonym("alice", SecretStr(KEY)) == expected
    assert pseudonym("alice", SecretStr(OTHER_KEY)) != expected


def test_pseudonymize_replaces_user_and_session_ids_and_keeps_blanks_for_validation():
    events = pl.DataFrame({"user_id": ["alice", "  ", None, "alice"], "session_id": ["alice-s1", None, "x", "y"]})
    out = pseudonymize(events, SecretStr(KEY))
    users = out["user_id"].to_list()
    assert users[0] == users[3] == pseudonym("alice", SecretStr(KEY))
    assert users[1:3] == ["  ", None], "blank and null ids stay for the malformed_user_id rule"
    assert out["session_id"][0] == pseudonym("alice-s1", SecretStr(KEY))
    assert "alice" not in str(out.rows())


def test_the_key_comes_from_the_environment_and_is_masked():
    config = load_config(None, environ={"NIGHTREC_PRIVACY__KEY": KEY, "NIGHTREC_PRIVACY__PSEUDONYMIZE": "true"})
    assert config.privacy.pseudonymize and config.privacy.key.get_secret_value() == KEY
    assert KEY not in repr(config) and KEY not in config.model_dump_json()


def test_a_config_file_that_sets_the_key_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "nightrec.yaml"
    path.write_text(f"privacy:\n  key: {KEY}\n")
    with pytest.raises(ConfigError, match=r"nightrec.yaml: a config file may not set privacy.key") as err:
        load_config(path, environ={})
    assert KEY not in str(err.value)


def test_a_flag_that_sets_the_key_is_refused():
    with pytest.raises(ConfigError, match=r"a flag may not set privacy.key: set NIGHTREC_PRIVACY__KEY"):
        load_config(None, {"privacy": {"key": KEY}}, environ={})


def test_a_bad_key_is_reported_without_showing_it():
    with pytest.raises(ConfigError, match=r"privacy.key: .*at least 16 characters \(got \*+\)") as err:
        load_config(None, environ={"NIGHTREC_PRIVACY__KEY": "short-secret"})
    assert "short-secret" not in str(err.value)


def test_pseudonymize_without_a_key_stops_ingest_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"privacy.pseudonymize needs privacy.key: set NIGHTREC_PRIVACY__KEY"):
        protect_events(_events(), tmp_path, PrivacyConfig(pseudonymize=True))


def test_forgotten_users_are_dropped_at_ingest_even_when_the_source_holds_them(tmp_path):
    key = SecretStr(KEY)
    record_request(tmp_path, pseudonym("alice", key), key_id(key))
    out = protect_events(_events(), tmp_path, PrivacyConfig(key=key))
    assert out["user_id"].to_list() == ["bob"]
    entry = read_forget_log(tmp_path)[0]
    assert set(entry) == {"pseudonym", "key_id", "requested_at"} and "alice" not in json.dumps(entry)


def test_after_a_rotation_the_previous_key_still_matches_old_requests(tmp_path):
    old = SecretStr(OTHER_KEY)
    record_request(tmp_path, pseudonym("alice", old), key_id(old))
    with pytest.raises(ConfigError, match=r"cannot be matched with privacy.key; set NIGHTREC_PRIVACY__PREVIOUS_KEY"):
        drop_forgotten(_events(), tmp_path, PrivacyConfig(key=SecretStr(KEY)))
    out = drop_forgotten(_events(), tmp_path, PrivacyConfig(key=SecretStr(KEY), previous_key=old))
    assert out["user_id"].to_list() == ["bob"]


def test_raw_copies_older_than_raw_retention_days_are_deleted(tmp_path):
    for day in ("2026-02-08", "2026-02-09"):
        night = tmp_path / "runs" / day
        night.mkdir(parents=True)
        for name in ("events.parquet", "clean.parquet", "quarantine.parquet", "validation.json"):
            (night / name).write_text("x")
    removed = apply_raw_retention(tmp_path, date(2026, 3, 10), keep_days=30)
    assert removed == [f"runs/2026-02-08/{n}" for n in ("events.parquet", "clean.parquet", "quarantine.parquet")]
    assert (tmp_path / "runs/2026-02-08/validation.json").is_file(), "derived files stay"
    assert (tmp_path / "runs/2026-02-09/events.parquet").is_file(), "29 days old: kept"


def test_raw_retention_defaults_to_30_days_apart_from_validation():
    config = NightrecConfig()
    assert config.privacy.raw_retention_days == 30 and config.validation.retention_days == 3650


def test_forget_removes_rows_renumbers_the_vocabulary_and_redacts_reports(tmp_path):
    key = SecretStr(KEY)
    night = tmp_path / "runs" / "2026-03-11"
    (night / "sequences").mkdir(parents=True)
    _events(("alice", "bob", "carol", "alice")).write_parquet(night / "events.parquet")
    pl.DataFrame({"user_id": ["bob", "alice", "carol"], "user_idx": [0, 1, 2]}).with_columns(
        pl.col("user_idx").cast(pl.Int32)
    ).write_parquet(night / "sequences" / USERS_FILE)
    pl.DataFrame({"user_idx": [0, 1, 2], "target": [5, 6, 7]}).with_columns(
        pl.col("user_idx").cast(pl.Int32)
    ).write_parquet(night / "sequences" / "valid.parquet")
    (night / "validation.json").write_text(json.dumps({"sample": ["alice", "malice"]}))
    config = NightrecConfig(data_dir=tmp_path, privacy={"key": key})

    report = forget_user(config, pseudonym("alice", key))

    assert report["rows"] == {"runs/2026-03-11/events.parquet": 2, "runs/2026-03-11/sequences/users.parquet": 1}
    users = pl.read_parquet(night / "sequences" / USERS_FILE)
    assert users.rows() == [("bob", 0), ("carol", 1)], "user_idx stays contiguous"
    assert pl.read_parquet(night / "sequences" / "valid.parquet").rows() == [(0, 5), (1, 7)]
    assert json.loads((night / "validation.json").read_text()) == {"sample": ["[forgotten]", "malice"]}
    assert requested_retrain(tmp_path / "models").startswith("a user was forgotten")


def test_forget_needs_the_key_to_record_the_request(tmp_path):
    with pytest.raises(ConfigError, match=r"nightrec forget needs privacy.key"):
        forget_user(NightrecConfig(data_dir=tmp_path), "whoever")


def test_external_ids_put_the_source_ids_back_in_the_published_table():
    key = SecretStr(KEY)
    table = pl.DataFrame({"user_id": [pseudonym("bob", key), pseudonym("alice", key)], "rank": [1, 1]})
    out = with_external_ids(table, pl.Series(["alice", "bob", "carol"]), key)
    assert out.rows() == [("bob", 1), ("alice", 1)]


def test_a_reader_error_names_the_column_but_not_the_value(tmp_path):
    from nightrec.ingest.input_files import why

    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\nalice-secret,i1\n")
    with pytest.raises(pl.exceptions.PolarsError) as err:
        pl.read_csv(path, schema_overrides={"user_id": pl.Int64})
    line = why(err.value)
    assert "alice-secret" not in line and "could not parse a value as dtype" in line and "'user_id'" in line


def test_publish_external_ids_keys_the_published_table_by_the_source_ids(tmp_path):
    from nightrec.privacy.external import published_ids

    source = tmp_path / "events.csv"
    source.write_text("user_id,item_id,event_type,timestamp\nalice,i1,view,2026-03-01T10:00:00Z\n")
    key = SecretStr(KEY)
    recs = pl.DataFrame({"user_id": [pseudonym("alice", key)], "rank": [1]})
    privacy = {"pseudonymize": True, "key": key}
    config = NightrecConfig(data_dir=tmp_path, events=str(source), privacy=privacy)
    assert published_ids(recs, config).equals(recs), "pseudonyms by default"
    config = NightrecConfig(data_dir=tmp_path, events=str(source), privacy={**privacy, "publish_external_ids": True})
    assert published_ids(recs, config)["user_id"].to_list() == ["alice"]
