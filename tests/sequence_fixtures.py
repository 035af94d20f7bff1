"""Tiny event frames for the sequence tests, written out by hand so expected results are obvious."""

from datetime import UTC, datetime, timedelta

import polars as pl

from nightrec.schema import CLICK, EVENT_SCHEMA

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def events(rows: list[tuple], with_session: bool = False) -> pl.DataFrame:
    """Rows of (user, item, minutes after T0[, event_type[, session_id]]) in the contract's schema."""
    data = {name: [] for name in EVENT_SCHEMA}
    for row in rows:
        user, item, minutes = row[:3]
        data["user_id"].append(user)
        data["item_id"].append(item)
        data["timestamp"].append(T0 + timedelta(minutes=minutes))
        data["event_type"].append(row[3] if len(row) > 3 else CLICK)
        data["session_id"].append(row[4] if len(row) > 4 and with_session else None)
        data["value"].append(None)
    return pl.DataFrame(data, schema=EVENT_SCHEMA)


def decode(seqs, frame: pl.DataFrame, column: str) -> dict[str, list[str] | str]:
    """A split frame's ``column`` (a list or a single index) per external user id, as external item ids."""
    names = dict(zip(seqs.items["item_idx"].to_list(), seqs.items["item_id"].to_list(), strict=True))
    users = dict(zip(seqs.users["user_idx"].to_list(), seqs.users["user_id"].to_list(), strict=True))
    out = {}
    for user_idx, value in zip(frame["user_idx"].to_list(), frame[column].to_list(), strict=True):
        out[users[user_idx]] = [names[v] for v in value] if isinstance(value, list) else names[value]
    return out
