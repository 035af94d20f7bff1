"""The forget log (``<data_dir>/forget-log.jsonl``): one line per request, pseudonym, key id and
time only, and how ingest keeps forgotten users out of every later night."""

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nightrec.config import PrivacyConfig
from nightrec.errors import ConfigError
from nightrec.layout import FORGET_LOG
from nightrec.privacy.pseudonyms import key_id, pseudonym_map
from nightrec.schema import USER_ID


def forget_log_path(data_dir: Path) -> Path:
    return Path(data_dir) / FORGET_LOG


def read_forget_log(data_dir: Path) -> list[dict]:
    path = forget_log_path(data_dir)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_request(data_dir: Path, user_pseudonym: str, key_name: str, now: datetime | None = None) -> dict:
    """Append one request; the raw id is never written."""
    entry = {
        "pseudonym": user_pseudonym,
        "key_id": key_name,
        "requested_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    path = forget_log_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return entry


def drop_forgotten(events: pl.DataFrame, data_dir: Path, privacy: PrivacyConfig) -> pl.DataFrame:
    """``events`` without the rows of users in the forget log, whatever the source still holds.

    Requests recorded under the current key or ``privacy.previous_key`` are matched; one under
    any other key cannot be, and stops the night rather than let a forgotten user back in.
    """
    entries = read_forget_log(data_dir)
    if not entries:
        return events
    keys = {key_id(k): k for k in (privacy.key, privacy.previous_key) if k is not None}
    unknown = sorted({e["key_id"] for e in entries} - set(keys))
    if unknown:
        raise ConfigError(
            f"{forget_log_path(data_dir)}: forget requests under key id(s) {', '.join(unknown)} cannot be "
            "matched with privacy.key; set NIGHTREC_PRIVACY__PREVIOUS_KEY to the key they were made with"
        )
    ids = events.get_column(USER_ID)
    forgotten: set[str] = set()
    for name, key in keys.items():
        wanted = {e["pseudonym"] for e in entries if e["key_id"] == name}
        mapping = pseudonym_map(ids, key).filter(pl.col("pseudonym").is_in(list(wanted)))
        forgotten |= set(mapping.get_column(USER_ID).to_list())
    return events.filter(~pl.col(USER_ID).is_in(list(forgotten)) | pl.col(USER_ID).is_null())
