"""Bad input, each in a small frame made here: the verdict, the quarantine reasons, and no row lost."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from expectations.load import RAW_TIMESTAMP, from_frame
from expectations.report import exit_code, markdown_summary, table_rows
from expectations.rules import REASONS
from expectations.runner import CLEAN_FILE, QUARANTINE_FILE, ValidationFailed, validate_file, validate_frame
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, KEY_COLUMNS, TIMESTAMP, USER_ID, VALUE

RUN_DATE = date(2026, 3, 11)
NIGHT = datetime(2026, 3, 10, tzinfo=UTC)


def make_events(days: int = 5, per_day: int = 120, users: int = 20, items: int = 12, last_night: int | None = None):
    """Clean events: ``per_day`` rows on each of ``days`` days ending the night before RUN_DATE."""
    rows = []
    for d in range(days):
        day = NIGHT - timedelta(days=days - 1 - d)
        n = last_night if (last_night is not None and d == days - 1) else per_day
        for k in range(n):
            rows.append(
                {
                    USER_ID: f"u{(k * 7 + d) % users:03d}",
                    ITEM_ID: f"i{(k * 5 + d * 3) % items:03d}",
                    EVENT_TYPE: ("view", "click", "add_to_cart", "purchase")[k % 4],
                    TIMESTAMP: day + timedelta(seconds=k * 86_000 // n + d),
                    "session_id": f"s{d}-{k // 6}",
                    VALUE: 9.5 if k % 4 == 3 else None,
                }
            )
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def config(tmp_path, **validation) -> NightrecConfig:
    return NightrecConfig(data_dir=tmp_path, validation=validation)


def validate(events: pl.DataFrame, tmp_path, **validation) -> dict:
    """Validate into a fresh folder and check what every run owes: nothing lost, nothing duplicated."""
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    report = validate_frame(events, config(tmp_path, **validation), RUN_DATE, out)
    assert report["rows_in"] == events.height and report["reconciled"] is True
    assert report["rows_clean"] + report["rows_quarantined"] == events.height
    clean, quarantine = pl.read_parquet(out / CLEAN_FILE), pl.read_parquet(out / QUARANTINE_FILE)
    assert (clean.height, quarantine.height) == (report["rows_clean"], report["rows_quarantined"])
    assert quarantine.get_column(REASONS).list.len().min() or quarantine.is_empty()
    expected = from_frame(events).events.select(*EVENT_SCHEMA)
    together = pl.concat([clean, quarantine.select(*EVENT_SCHEMA)])
    assert_frame_equal(together.sort(pl.all()), expected.sort(pl.all()))
    report["out"] = out
    return report


def failed(report: dict, severity: str) -> set[str]:
    return set(report["failed"][severity])


def test_clean_frame_passes(tmp_path):
    events = make_events()
    report = validate(events, tmp_path)
    assert report["status"] == "ok" and report["rows_quarantined"] == 0
    assert exit_code(report) == 0
    assert report["night"]["night_rows"] == 120


@pytest.mark.parametrize("column", KEY_COLUMNS)
def test_nulls_in_each_key_column_are_quarantined_with_a_warning(tmp_path, column):
    events = make_events()
    events = events.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([3, 250, 400])).then(None).otherwise(pl.col(column)).alias(column)
    )
    report = validate(events, tmp_path)
    records = {r["name"]: r for r in report["expectations"]}
    assert report["status"] == "warn" and failed(report, "warn") == {f"null_{column}"}
    # one expectation per rule, on the real column: GX passes it within the tolerated share
    null_rule = records[f"null_{column}"]
    assert null_rule["success"] and null_rule["severity"] == "critical" and null_rule["column"] == column
    assert null_rule["expectation"] == "expect_column_values_to_not_be_null" and null_rule["unexpected_count"] == 3
    assert report["by_reason"][f"null_{column}"] == 3 and report["rows_quarantined"] == 3
    quarantine = pl.read_parquet(report["out"] / QUARANTINE_FILE)
    assert quarantine.get_column(REASONS).to_list() == [[f"null_{column}"]] * 3
    assert quarantine.get_column(column).null_count() == 3
    clean = pl.read_parquet(report["out"] / CLEAN_FILE)
    assert clean.schema == pl.Schema(EVENT_SCHEMA) and clean.get_column(column).null_count() == 0


def test_thirty_percent_null_user_ids_is_an_error_naming_the_rule(tmp_path):
    events = make_events()
    events = events.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 < 3).then(None).otherwise(pl.col(USER_ID)).alias(USER_ID)
    )
    run_dir = tmp_path / "runs" / RUN_DATE.isoformat()
    run_dir.mkdir(parents=True)
    events.write_parquet(run_dir / "events.parquet")
    with pytest.raises(ValidationFailed, match=r"null_user_id \[missing\]: 180 of 600 \(30.0%\)") as info:
        validate_file(run_dir / "events.parquet", config(tmp_path), RUN_DATE)
    report = info.value.report
    assert failed(report, "error") == {"null_user_id"}
    # The reports are written before the run is stopped.
    assert json.loads((run_dir / "validation.json").read_text())["status"] == "error"
    assert report["files"]["data_docs"] == str(tmp_path.resolve() / "gx/uncommitted/data_docs/local_site/index.html")
    assert Path(report["files"]["data_docs"]).is_file()
    assert pl.read_parquet(run_dir / QUARANTINE_FILE).height == 180
    assert exit_code(report) == 2


@pytest.mark.parametrize(
    ("event_type", "timestamp", "reason"),
    [
        ("hover", NIGHT, "unknown_event_type"),
        ("view", NIGHT + timedelta(days=1, minutes=11), "future_timestamp"),
        ("view", datetime(2025, 1, 1, tzinfo=UTC), "before_retention"),
    ],
)
def test_noisy_values_are_quarantined(tmp_path, event_type, timestamp, reason):
    bad = pl.DataFrame(
        {USER_ID: ["u001"], ITEM_ID: ["i001"], EVENT_TYPE: [event_type], TIMESTAMP: [timestamp]},
        schema_overrides={TIMESTAMP: EVENT_SCHEMA[TIMESTAMP]},
    )
    # A little after midnight, within the clock skew, is fine.
    skewed = make_events().head(1).with_columns(pl.lit(NIGHT + timedelta(days=1, minutes=9)).alias(TIMESTAMP))
    events = pl.concat([make_events(), skewed, bad], how="diagonal_relaxed")
    report = validate(events, tmp_path, retention_days=60)
    assert report["status"] == "warn" and failed(report, "warn") == {reason}
    assert {k: v for k, v in report["by_reason"].items() if v} == {reason: 1}
    quarantine = pl.read_parquet(report["out"] / QUARANTINE_FILE)
    assert quarantine.get_column(REASONS).to_list() == [[reason]]
    sample = {r["name"]: r["sample"] for r in report["expectations"]}[reason]
    assert sample[0][EVENT_TYPE] == event_type and sample[0][TIMESTAMP] == timestamp


def test_exact_duplicates_keep_the_first_copy(tmp_path):
    events = make_events()
    events = pl.concat([events, events[[10, 10, 20]]])
    report = validate(events, tmp_path)
    assert failed(report, "warn") == {"duplicate"} and report["by_reason"]["duplicate"] == 3
    clean = pl.read_parquet(report["out"] / CLEAN_FILE)
    assert clean.height == 600 and clean.is_duplicated().sum() == 0


def test_bot_burst_quarantines_the_user(tmp_path):
    events = make_events(per_day=200)
    burst = pl.DataFrame(
        {
            USER_ID: ["bot"] * 80,
            ITEM_ID: [f"i{k % 12:03d}" for k in range(80)],
            EVENT_TYPE: ["view"] * 80,
            TIMESTAMP: [NIGHT + timedelta(hours=3, milliseconds=500 * k) for k in range(80)],
        },
        schema_overrides={TIMESTAMP: EVENT_SCHEMA[TIMESTAMP]},
    )
    events = pl.concat([events, burst], how="diagonal_relaxed")
    report = validate(events, tmp_path)
    assert failed(report, "warn") == {"bot_user"} and report["by_reason"]["bot_user"] == 80
    assert set(pl.read_parquet(report["out"] / QUARANTINE_FILE).get_column(USER_ID)) == {"bot"}
    # The same burst under a looser limit is a normal user.
    loose = validate(events, tmp_path, bot_events_per_minute=200)
    assert loose["by_reason"]["bot_user"] == 0
    # ...but not under a daily limit it exceeds.
    daily = validate(events, tmp_path, bot_events_per_minute=200, bot_events_per_day=50)
    assert daily["by_reason"]["bot_user"] == 80


def test_empty_input_is_an_error(tmp_path):
    report = validate(pl.DataFrame(schema=EVENT_SCHEMA), tmp_path)
    assert {"non_empty_input", "night_partition"} <= failed(report, "error")
    assert pl.read_parquet(report["out"] / CLEAN_FILE).height == 0


def test_missing_column_is_an_error_and_keeps_every_row(tmp_path):
    events = make_events().drop(ITEM_ID)
    report = validate(events, tmp_path)
    assert failed(report, "error") >= {"required_columns", "null_item_id"}
    records = {r["name"]: r for r in report["expectations"]}
    assert records["required_columns"]["observed_value"] == "missing item_id"
    quarantine = pl.read_parquet(report["out"] / QUARANTINE_FILE)
    assert quarantine.height == events.height and quarantine.get_column(REASONS).to_list()[0] == ["null_item_id"]


def test_text_where_numbers_were_expected(tmp_path):
    events = make_events()
    epoch = (pl.col(TIMESTAMP).dt.epoch("s")).cast(pl.String)
    raw = events.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("yesterday")).otherwise(epoch).alias(TIMESTAMP),
        pl.when(pl.int_range(pl.len()) == 11).then(pl.lit("n/a")).otherwise(pl.col(VALUE).cast(pl.String)).alias(VALUE),
    )
    report = validate(raw, tmp_path)
    assert failed(report, "warn") == {"null_timestamp", "malformed_timestamp", "malformed_value", "column_types"}
    records = {r["name"]: r for r in report["expectations"]}
    assert records["column_types"]["sample"] == [[VALUE, "string"]]
    quarantine = pl.read_parquet(report["out"] / QUARANTINE_FILE)
    assert sorted(quarantine.get_column(RAW_TIMESTAMP).drop_nulls()) == ["yesterday"]
    assert quarantine.height == 2
    # Epoch seconds written as text are still read as the right instants.
    clean = pl.read_parquet(report["out"] / CLEAN_FILE)
    assert (
        clean.get_column(TIMESTAMP).sort().to_list()
        == events.filter(~pl.int_range(pl.len()).is_in([7, 11])).get_column(TIMESTAMP).sort().to_list()
    )


def test_blank_and_float_ids(tmp_path):
    events = make_events().with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("  ")).otherwise(pl.col(ITEM_ID)).alias(ITEM_ID)
    )
    report = validate(events, tmp_path)
    assert failed(report, "warn") == {"malformed_item_id"} and report["by_reason"]["malformed_item_id"] == 1
    floats = make_events().with_columns(pl.col(USER_ID).str.slice(1).cast(pl.Float64))
    report = validate(floats, tmp_path)
    assert failed(report, "warn") == {"column_types"} and report["rows_quarantined"] == 0


def test_a_night_with_five_percent_of_the_usual_volume_is_an_error(tmp_path):
    events = make_events(per_day=200, last_night=10)
    report = validate(events, tmp_path)
    assert failed(report, "error") == {"volume"} and report["rows_quarantined"] == 0
    assert report["night"]["volume_ratio"] == pytest.approx(0.05)
    assert report["night"]["volume_history"]["source"] == "input"


def test_volume_reads_previous_nights_reports(tmp_path):
    for d, rows in enumerate([1000, 1200, 1100, 900]):
        night = RUN_DATE - timedelta(days=4 - d)
        (tmp_path / "runs" / night.isoformat()).mkdir(parents=True)
        (tmp_path / "runs" / night.isoformat() / "validation.json").write_text(json.dumps({"night_rows": rows}))
    events = make_events(days=1, per_day=120)
    report = validate(events, tmp_path)
    assert report["night"]["volume_history"]["source"] == "runs"
    assert report["night"]["trailing_median"] == 1050
    assert failed(report, "error") == {"volume"}
    looser = validate_frame(make_events(days=1, per_day=120), config(tmp_path, volume_min_ratio=0.1), RUN_DATE)
    assert looser["status"] == "ok"
    explosion = validate_frame(make_events(days=1, per_day=6000, users=300), config(tmp_path), RUN_DATE)
    assert failed(explosion, "error") == {"volume"} and explosion["night"]["volume_ratio"] > 5


def cold_users_night() -> pl.DataFrame:
    """Four days of history, then a night whose only events are 100 first-time users'."""
    history = make_events(days=4, per_day=120)
    newcomers = pl.DataFrame(
        {
            USER_ID: [f"new{k:03d}" for k in range(100)],
            ITEM_ID: [f"i{k % 12:03d}" for k in range(100)],
            EVENT_TYPE: ["view"] * 100,
            TIMESTAMP: [NIGHT + timedelta(minutes=7 * k) for k in range(100)],
        },
        schema_overrides={TIMESTAMP: EVENT_SCHEMA[TIMESTAMP]},
    )
    return pl.concat([history.with_columns(pl.col(TIMESTAMP) - timedelta(days=1)), newcomers], how="diagonal_relaxed")


def test_a_night_of_only_cold_users_warns_and_quarantines_nothing(tmp_path):
    events = cold_users_night()
    report = validate(events, tmp_path)
    assert failed(report, "warn") == {"cold_users"} and report["status"] == "warn"
    assert report["rows_quarantined"] == 0
    records = {r["name"]: r for r in report["expectations"]}
    assert records["cold_users"]["unexpected_count"] == 100


def test_report_reads_well(tmp_path):
    events = pl.concat([make_events(), make_events()[[0]]])
    report = validate(events, tmp_path)
    text = markdown_summary(report)
    assert "warnings" in text and "| duplicate | noisy | warn | critical | 1 of 601 rows (0.17%) |" in text
    assert "| duplicate | 1 |" in text and "missing rate: value 75.04%" in text  # 451 of 601
    rows = table_rows(report)
    assert rows[[r[1] for r in rows].index("duplicate")][:4] == ("noisy", "duplicate", "critical", "warn")
    assert Path(report["files"]["data_docs"]).is_file()
    saved = json.loads((report["out"] / "validation.json").read_text())
    assert saved["by_reason"]["duplicate"] == 1 and len(saved["expectations"]) == len(rows)
    for record in saved["expectations"]:
        assert {
            "group",
            "severity",
            "success",
            "observed_value",
            "unexpected_count",
            "unexpected_percent",
            "sample",
        } <= set(record)


def test_thresholds_and_severities_come_from_the_config(tmp_path):
    events = make_events()
    events = events.with_columns(
        pl.when(pl.int_range(pl.len()) < 12).then(pl.lit("hover")).otherwise(pl.col(EVENT_TYPE)).alias(EVENT_TYPE)
    )
    assert validate(events, tmp_path)["status"] == "warn"  # 2% of rows
    strict = validate(events, tmp_path, max_bad_ratio=0.01)
    assert failed(strict, "error") == {"unknown_event_type"}
    per_rule = validate(events, tmp_path, rule_max_ratio={"unknown_event_type": 0.001})
    assert failed(per_rule, "error") == {"unknown_event_type"}
    short = make_events(per_day=200, last_night=10)
    assert validate(short, tmp_path, severity={"volume": "warn"})["status"] == "warn"
    with pytest.raises(ConfigError, match="unknown check"):
        validate(events, tmp_path, severity={"volumes": "warn"})


def test_data_docs_show_hostile_values_escaped_never_as_markup(tmp_path):
    script = "<script>alert('xss')</script>"
    image = '<img src=x onerror="alert(1)">'
    events = make_events().with_columns(pl.col(TIMESTAMP).cast(pl.String))
    hostile = events.head(2).with_columns(pl.Series(EVENT_TYPE, [script, "a&b"]), pl.Series(TIMESTAMP, [image, "x"]))
    report = validate_frame(
        pl.concat([events, hostile]),
        NightrecConfig(data_dir=tmp_path, event_types="view,click,add_to_cart,purchase,a&b"),
        RUN_DATE,
        tmp_path / "out",
    )
    assert report["by_reason"]["unknown_event_type"] == 1, "escaping keeps set membership ('a&b' is allowed)"
    assert report["by_reason"]["malformed_timestamp"] == 2
    pages = list((tmp_path / "gx" / "uncommitted" / "data_docs").rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text()
        assert "<script>alert(" not in html and "<img src=x" not in html, page
    assert any("&lt;script&gt;alert(" in page.read_text() for page in pages), "the value is still shown"
