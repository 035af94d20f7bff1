"""Hand-built event logs for the behaviour tests, in the event contract."""

from datetime import UTC, datetime, timedelta

import polars as pl

from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, SESSION_ID, TIMESTAMP, USER_ID, VALUE

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def log(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (user, item, event_type, minutes after T0[, session_id]) as an event frame."""
    return pl.DataFrame(
        {
            USER_ID: [r[0] for r in rows],
            ITEM_ID: [r[1] for r in rows],
            EVENT_TYPE: [r[2] for r in rows],
            TIMESTAMP: [T0 + timedelta(minutes=r[3]) for r in rows],
            SESSION_ID: [r[4] if len(r) > 4 else None for r in rows],
            VALUE: [None] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


def funnel_log() -> pl.DataFrame:
    """10 views, 4 carts, 1 purchase (no clicks), spread over users and items on one day."""
    rows = [(f"u{i % 5}", f"i{i}", "view", i) for i in range(10)]
    rows += [(f"u{i % 5}", f"i{i}", "add_to_cart", 20 + i) for i in range(4)]
    rows += [("u0", "i0", "purchase", 30)]
    return log(rows)


def daily_log(days: int, per_day: int = 60, items: int = 12, users: int = 20, shift_last: int = 1) -> pl.DataFrame:
    """A steady log: the same per-day mix every day; the last day's volume is multiplied by ``shift_last``."""
    rows = []
    for day in range(days):
        volume = per_day * (shift_last if day == days - 1 else 1)
        for k in range(volume):
            user = f"u{k % users}"
            minute = day * 1440 + 60 + k * (600 // max(volume, 1))
            item = f"i{(k * 7) % items}"
            rows.append((user, item, "view", minute, f"{user}-d{day}"))
            if k % 3 == 0:
                rows.append((user, item, "click", minute + 0.1, f"{user}-d{day}"))
            if k % 6 == 0:
                rows.append((user, item, "add_to_cart", minute + 0.2, f"{user}-d{day}"))
            if k % 12 == 0:
                rows.append((user, item, "purchase", minute + 0.3, f"{user}-d{day}"))
    return log(rows)
