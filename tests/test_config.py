from datetime import date
from pathlib import Path

import pytest

from nightrec.config import NightrecConfig, load_config
from nightrec.errors import ConfigError


def test_defaults_are_the_documented_ones():
    config = load_config(environ={})
    assert config.data_dir == Path("nightrec-data")
    assert config.k == 20
    assert config.event_types == ["view", "click", "add_to_cart", "purchase"]
    assert config.duckdb_path == Path("nightrec-data/nightrec.duckdb")


def test_file_then_env_then_flags(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("k: 5\nevents: a.parquet\nmodel:\n  cell: lstm\n  hidden_size: 32\n")
    config = load_config(yaml_file, environ={})
    assert (config.k, config.events, config.model.family, config.model.hidden_size) == (5, "a.parquet", "lstm", 32)

    env = {"NIGHTREC_K": "7", "NIGHTREC_MODEL__CELL": "rnn", "NIGHTREC_DATA_DIR": "/srv/d"}
    config = load_config(yaml_file, environ=env)
    assert (config.k, config.model.family, config.model.hidden_size, config.data_dir) == (7, "rnn", 32, Path("/srv/d"))

    config = load_config(yaml_file, overrides={"k": 9, "events": None}, environ=env)
    assert config.k == 9 and config.events == "a.parquet"


def test_toml_file_and_env_lists(tmp_path):
    toml_file = tmp_path / "c.toml"
    toml_file.write_text('run_date = "2026-01-02"\n[publish]\nretention_days = 3\n')
    config = load_config(toml_file, environ={"NIGHTREC_EVENT_TYPES": "view, purchase"})
    assert config.run_date == date(2026, 1, 2)
    assert config.publish.retention_days == 3
    assert config.event_types == ["view", "purchase"]


def test_config_file_from_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("k: 3\n")
    assert load_config(environ={"NIGHTREC_CONFIG": str(path)}).k == 3


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"NIGHTREC_K": "0"},
            "k: Input should be greater than or equal to 1 (got '0') [flag, file key 'k' or NIGHTREC_K]",
        ),
        ({"NIGHTREC_MODEL__FAMILY": "transformer"}, "model.family"),
        ({"NIGHTREC_MODEL__CELL": "transformer"}, "model.family"),  # the name before families
        ({"NIGHTREC_RUN_DATE": "yesterday"}, "run_date"),
        ({"NIGHTREC_MODEL__NOT_A_KEY": "1"}, "model.not_a_key: Extra inputs are not permitted"),
        ({"NIGHTREC_TRAIN__DEVICES": "0"}, "train.devices"),
    ],
)
def test_invalid_values_name_the_key(environ, expected):
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        load_config(environ=environ)
    assert expected in str(info.value)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})


def test_config_round_trips_through_json():
    config = load_config(overrides={"k": 4, "run_date": "2026-02-03"}, environ={})
    assert NightrecConfig.model_validate_json(config.model_dump_json()) == config


def test_test_suite_variables_are_not_config_keys():
    config = load_config(environ={"NIGHTREC_TEST_POSTGRES_URL": "postgresql://x@h/db", "NIGHTREC_K": "3"})
    assert config.k == 3


def test_unrelated_nightrec_variables_are_someone_elses():
    config = load_config(environ={"NIGHTREC_HOME": "/opt/elsewhere", "NIGHTREC_VERSION": "9", "NIGHTREC_K": "4"})
    assert config.k == 4
