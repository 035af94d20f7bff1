"""The GX project as its users know it: saved, editable suites, the nightrec Checkpoint named by
the run date, native severity, and one Data Docs site with every night, readable offline."""

import json
import re
from datetime import timedelta

import polars as pl
import pytest

from expectations.runner import validate_frame
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.schema import EVENT_TYPE, TIMESTAMP
from tests.test_validation import RUN_DATE, cold_users_night, make_events

REMOTE_ASSET = re.compile(r"""<(script|link)\b[^>]*\b(src|href)=["']?(https?:)?//""", re.I)


def _gx(tmp_path):
    return tmp_path / "gx"


def _site(tmp_path):
    return _gx(tmp_path) / "uncommitted" / "data_docs" / "local_site"


def _hover(share_rows: int = 12) -> pl.DataFrame:
    events = make_events()
    return events.with_columns(
        pl.when(pl.int_range(pl.len()) < share_rows)
        .then(pl.lit("hover"))
        .otherwise(pl.col(EVENT_TYPE))
        .alias(EVENT_TYPE)
    )


def _edit_suite(tmp_path, batch: str, name: str, change) -> None:
    path = _gx(tmp_path) / "expectations" / f"nightrec_{batch}.json"
    suite = json.loads(path.read_text())
    (expectation,) = [e for e in suite["expectations"] if e["meta"].get("name") == name]
    change(expectation)
    path.write_text(json.dumps(suite, indent=2))


def test_suites_are_saved_in_the_project_and_an_edit_changes_the_verdict(tmp_path):
    config = NightrecConfig(data_dir=tmp_path)
    first = validate_frame(_hover(), config, RUN_DATE, tmp_path / "out")  # 2% unknown event types
    assert first["status"] == "warn" and first["failed"]["warn"] == ["unknown_event_type"]
    assert (_gx(tmp_path) / "great_expectations.yml").is_file()
    assert (_gx(tmp_path) / "checkpoints" / "nightrec.json").is_file()
    saved = json.loads((_gx(tmp_path) / "expectations" / "nightrec_events.json").read_text())
    rule = next(e for e in saved["expectations"] if e["meta"]["name"] == "unknown_event_type")
    # one expectation per rule, on the real column, with native severity and the config's limit as a parameter
    assert rule["type"] == "expect_column_values_to_be_in_set" and rule["kwargs"]["column"] == EVENT_TYPE
    assert rule["severity"] == "critical" and rule["kwargs"]["mostly"] == {"$PARAMETER": "unknown_event_type_mostly"}
    assert [e["meta"]["name"] for e in saved["expectations"]].count("unknown_event_type") == 1

    _edit_suite(tmp_path, "events", "unknown_event_type", lambda e: e["kwargs"].update(mostly=1.0))
    edited = validate_frame(_hover(), config, RUN_DATE, tmp_path / "out")
    assert edited["status"] == "error" and edited["failed"]["error"] == ["unknown_event_type"]
    assert edited["rows_quarantined"] == first["rows_quarantined"] == 12, "the edit changes the verdict, not the split"


def test_an_unreadable_suite_edit_is_a_clear_error(tmp_path):
    config = NightrecConfig(data_dir=tmp_path)
    validate_frame(make_events(), config, RUN_DATE)
    path = _gx(tmp_path) / "expectations" / "nightrec_night.json"
    path.write_text(path.read_text().replace('"expectations"', '"expectations" oops', 1))
    with pytest.raises(ConfigError, match=r"nightrec_night\.json: the saved expectation suite cannot be read"):
        validate_frame(make_events(), config, RUN_DATE)
    _edit_suite_text = path.read_text().replace('"expectations" oops', '"expectations"', 1)
    path.write_text(_edit_suite_text.replace('"$PARAMETER": "min_density"', '"$PARAMETER": "min_densty"'))
    with pytest.raises(ConfigError, match=r"GX could not run the saved suites in .*gx/expectations.*min_density"):
        validate_frame(make_events(), config, RUN_DATE)


def test_the_checkpoint_run_is_named_by_the_run_date_and_stored(tmp_path):
    report = validate_frame(make_events(), NightrecConfig(data_dir=tmp_path), RUN_DATE)
    assert report["checkpoint"] == {"name": "nightrec", "run_name": RUN_DATE.isoformat(), "success": True}
    stored = sorted((_gx(tmp_path) / "uncommitted" / "validations").rglob("*.json"))
    assert {p.relative_to(_gx(tmp_path) / "uncommitted" / "validations").parts[:2] for p in stored} == {
        (f"nightrec_{batch}", RUN_DATE.isoformat()) for batch in ("events", "columns", "night", "users", "items")
    }
    assert "__none__" not in (_site(tmp_path) / "index.html").read_text()


def test_warn_level_failures_are_native_warnings_and_do_not_fail_the_night(tmp_path):
    report = validate_frame(cold_users_night(), NightrecConfig(data_dir=tmp_path), RUN_DATE)
    cold = next(r for r in report["expectations"] if r["name"] == "cold_users")
    assert (cold["severity"], cold["success"], cold["outcome"]) == ("warning", False, "warn")
    assert report["status"] == "warn" and report["failed"]["error"] == []
    assert report["checkpoint"]["success"] is False, "GX itself says an expectation failed"
    (page,) = (_site(tmp_path) / "validations" / "nightrec_users").rglob("*.html")
    assert "Warnings" in page.read_text() and "</i> Failed" not in page.read_text()
    index = (_site(tmp_path) / "index.html").read_text()
    users_row = next(row for row in re.findall(r"<tr>.*?</tr>", index, re.S) if "nightrec_users" in row)
    assert "Warnings" in users_row and "Failed" not in users_row


def test_one_site_lists_every_night_and_reads_offline(tmp_path):
    config = NightrecConfig(data_dir=tmp_path)
    validate_frame(make_events(), config, RUN_DATE)
    night2 = make_events(days=6).with_columns(pl.col(TIMESTAMP) + timedelta(days=1))
    validate_frame(night2, config, RUN_DATE + timedelta(days=1))
    index = (_site(tmp_path) / "index.html").read_text()
    rows = re.findall(r"<tr>.*?</tr>", index, re.S)  # written out: no script needed to see them
    runs = {night.isoformat() for night in (RUN_DATE, RUN_DATE + timedelta(days=1))}
    assert {name for row in rows for name in runs if f">{name}</a>" in row} == runs
    pages = list(_site(tmp_path).rglob("*.html"))
    assert len(pages) >= 1 + 5 * 2
    for page in pages:
        assert not REMOTE_ASSET.search(page.read_text()), page
    styles = (_gx(tmp_path) / "plugins" / "custom_data_docs" / "styles" / "data_docs_custom_styles.css").read_text()
    assert ".table" in styles and styles.split("*/")[-1].strip() in index, "GX inlines the local stylesheet"
