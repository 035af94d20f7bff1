"""Timestamps: every epoch unit read by magnitude, out-of-range and non-ISO values quarantined
with their text (or named in one line by the strict readers), never a crash and never a guess."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from expectations.runner import validate_file
from nightrec.config import load_config
from nightrec.errors import ConfigError, InputError
from nightrec.ingest.readers import read_events

RUN = date(2026, 3, 7)
GOOD = datetime(2026, 3, 6, 10, 0, tzinfo=UTC)
SECONDS = int(GOOD.timestamp())


def _events(timestamps: list, n_good: int = 40) -> pl.DataFrame:
    rows = n_good + len(timestamps)
    return pl.DataFrame(
        {
            "user_id": [f"u{i % 7}" for i in range(rows)],
            "item_id": [f"i{i % 11}" for i in range(rows)],
            "event_type": ["view"] * rows,
            "timestamp": [type(timestamps[0])(SECONDS + i) for i in range(n_good)] + timestamps,
        }
    )


def _validate(tmp_path: Path, frame: pl.DataFrame) -> dict:
    path = tmp_path / "run" / "events.parquet"
    path.parent.mkdir()
    frame.write_parquet(path)
    config = load_config(None, {"data_dir": str(tmp_path / "data")}, environ={})
    return validate_file(path, config, RUN)


@pytest.mark.parametrize(
    ("unit", "value"),
    [("ms", SECONDS * 1000), ("us", SECONDS * 10**6), ("ns", SECONDS * 10**9), ("float ms", SECONDS * 1000.0 + 0.5)],
)
def test_every_epoch_unit_is_read_by_magnitude(tmp_path, unit, value):
    path = tmp_path / "e.parquet"
    _events([value], n_good=1).write_parquet(path)
    got = read_events(path)["timestamp"][1]
    assert abs((got - GOOD).total_seconds()) < 0.01, (unit, got)


@pytest.mark.parametrize("bad", [60_000_000_000, -9_000_000_000_000_000_000, 1e30])
def test_one_out_of_range_timestamp_is_quarantined_with_its_text(tmp_path, bad):
    report = _validate(tmp_path, _events([bad]))
    assert report["rows_in"] == 41 == report["rows_clean"] + report["rows_quarantined"]
    assert report["by_reason"]["malformed_timestamp"] == 1
    quarantine = pl.read_parquet(Path(report["files"]["quarantine"]))
    assert quarantine["raw_timestamp"].to_list() == [str(pl.Series([bad])[0])]


def test_day_first_or_month_first_text_is_never_guessed(tmp_path):
    path = tmp_path / "e.csv"
    good = "".join(f"u{i % 7},i{i % 11},view,2026-03-06T10:{i:02d}:00Z\n" for i in range(30))
    path.write_text("user_id,item_id,event_type,timestamp\n" + good + "u1,i2,view,03/06/2026\n")
    with pytest.raises(InputError, match=r"e\.csv: column 'timestamp': 1 value\(s\) .*'03/06/2026'.*ISO 8601"):
        read_events(path)
    report = _validate(tmp_path, pl.read_csv(path))
    assert report["by_reason"]["malformed_timestamp"] == 1 and report["rows_clean"] == 30
    # a file written day-first throughout is refused, not read as 3 June
    only = tmp_path / "dayfirst.csv"
    only.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,03/06/2026\nu2,i2,view,04/06/2026 10:00\n")
    with pytest.raises(InputError, match=r"dayfirst\.csv: column 'timestamp': 2 value\(s\)"):
        read_events(only)


def test_a_run_date_out_of_range_is_a_config_error_not_a_crash(tmp_path):
    with pytest.raises(ConfigError, match="run_date"):
        load_config(None, {"run_date": "0001-01-01"}, environ={})
    events = tmp_path / "e.csv"
    events.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,2026-03-06T10:00:00Z\n")
    cli = Path(sys.executable).parent / "nightrec"
    out = subprocess.run(
        [str(cli), "validate", str(events), "--run-date", "0001-01-01", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert out.returncode == 2 and "run_date" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_nights_ingest_keeps_a_malformed_timestamp_for_quarantine(tmp_path):
    from expectations.load import ingest

    source = tmp_path / "in" / "events.csv"
    source.parent.mkdir()
    good = "".join(f"u{i % 7},i{i % 11},view,2026-03-06T10:{i:02d}:00Z\n" for i in range(40))
    source.write_text("user_id,item_id,event_type,timestamp\n" + good + "u1,i2,view,not-a-time\n")
    config = load_config(None, {"data_dir": str(tmp_path / "data")}, environ={})
    report = validate_file(ingest(str(source), "auto", tmp_path / "run" / "events.parquet"), config, RUN)
    assert report["rows_in"] == 41 == report["rows_clean"] + report["rows_quarantined"]
    assert report["by_reason"]["malformed_timestamp"] == 1
    quarantine = pl.read_parquet(Path(report["files"]["quarantine"]))
    assert quarantine["raw_timestamp"].to_list() == ["not-a-time"]
