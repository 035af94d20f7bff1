"""Faults a person fixes (a permission, a corrupt file, a bad flag) are one clear line, not
retries and a traceback."""

import errno
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.tasks import transient
from nightrec.errors import NightrecError
from nightrec.layout import LAST_CKPT, PARTIAL_PREFIX
from nightrec.publish.served import read_fallback


def _state(exc: BaseException):
    return SimpleNamespace(result=lambda raise_on_failure=False: exc)


def test_permission_and_path_errors_are_not_retried_as_transient():
    for exc in (
        PermissionError(13, "Permission denied"),
        FileNotFoundError(2, "No such file"),
        OSError(errno.EROFS, "Read-only file system"),
        OSError(errno.EXDEV, "Invalid cross-device link"),
    ):
        assert transient(None, None, _state(exc)) is False
    assert transient(None, None, _state(ConnectionResetError())) is True
    assert transient(None, None, _state(OSError(errno.EIO, "Input/output error"))) is True


def test_a_corrupt_duckdb_file_is_a_clear_error(tmp_path):
    db = tmp_path / "nightrec.duckdb"
    db.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(NightrecError, match=r"nightrec\.duckdb: cannot be opened as a DuckDB file"):
        read_fallback(db)


def test_a_negative_sample_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["recommend", "--sample", "-5", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user_id,item_id,event_type,timestamp\n", "no events (the input has a header and no rows)"),
        (
            "user_id;item_id;event_type;timestamp\nu1;i1;view;2026-03-06T10:00:00Z\nu2;i1;view;2026-03-06T11:00:00Z\n",
            "missing required column(s) user_id, item_id, event_type, timestamp; found user_id;item_id;event_type;"
            "timestamp (is it ';'-separated? only ',' is read)",
        ),
    ],
)
def test_header_only_and_other_separators_are_named_not_blamed_on_timestamps(tmp_path, text, expected):
    from expectations.load import load_events

    path = tmp_path / "events.csv"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path), "--data-dir", str(tmp_path / "data")])
    assert isinstance(result.exception, NightrecError) and expected in str(result.exception), result.output
    assert "timestamp' at or before" not in str(result.exception)
    assert load_events(path).events.height == text.count("\n") - 1, "rows in = the file's rows"


def test_a_truncated_last_checkpoint_is_retried_from_the_start_the_same_night(tmp_path):
    import logging

    from flows.training import resume_or_restart

    work = tmp_path / f"{PARTIAL_PREFIX}v1"
    work.mkdir()
    (work / LAST_CKPT).write_bytes(b"PK\x03\x04 cut short")
    calls = []

    def attempt(resume: bool):
        calls.append((resume, (work / LAST_CKPT).exists()))
        return (1, ["RuntimeError: PytorchStreamReader failed"]) if resume else (0, ["done"])

    assert resume_or_restart(work, attempt, logging.getLogger("test")) == (0, ["done"])
    assert calls == [(True, True), (False, False)], "resumed once, then started afresh in an emptied folder"
