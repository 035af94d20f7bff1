"""Row-level rules: each is a Polars expression that is True on a row that breaks it.

A row breaking any rule goes to quarantine with every rule it broke in ``reasons``; the rest is
clean. Nothing is lost: ``rows_in == rows_clean + rows_quarantined`` is checked here. GX judges
the night from the same rules (``expectations/suites.py``); these masks exist because GX only
ever returns a sample of the failing rows.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from expectations.load import RAW_COLUMNS, RAW_TIMESTAMP, RAW_VALUE
from nightrec.config import NightrecConfig
from nightrec.errors import NightrecError
from nightrec.schema import EVENT_SCHEMA, EVENT_TYPE, ITEM_ID, KEY_COLUMNS, TIMESTAMP, USER_ID

REASONS = "reasons"
MISSING, NOISY, SPARSE = "missing", "noisy", "sparse"
DUPLICATE = "duplicate"
BOT_USER = "bot_user"
# Rules GX cannot state over single values; it sees them as indicator columns named after the rule.
INDICATOR_RULES = (DUPLICATE, BOT_USER)
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class RowRule:
    name: str
    group: str
    expr: pl.Expr
    description: str


def run_start(run_date: date) -> datetime:
    """The run covers events strictly before midnight UTC of the run date."""
    return datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)


def night_window(run_date: date) -> tuple[datetime, datetime]:
    """Tonight's partition: the UTC day before the run date."""
    end = run_start(run_date)
    return end - timedelta(days=1), end


def latest_allowed(config: NightrecConfig, run_date: date) -> datetime:
    return run_start(run_date) + timedelta(minutes=config.validation.clock_skew_minutes)


def retention_start(config: NightrecConfig, run_date: date) -> datetime | None:
    days = config.validation.retention_days
    return None if days is None else run_start(run_date) - timedelta(days=days)


def _blank(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & ~pl.col(column).str.contains(r"\S")


def _bot_expr(config: NightrecConfig) -> pl.Expr:
    """Every row of a user who exceeds the per-minute or per-day limit at least once."""
    user, ts = pl.col(USER_ID), pl.col(TIMESTAMP)
    known = user.is_not_null() & ts.is_not_null()
    per_minute = pl.len().over(USER_ID, ts.dt.truncate("1m")) > config.validation.bot_events_per_minute
    per_day = pl.len().over(USER_ID, ts.dt.date()) > config.validation.bot_events_per_day
    return (known & (per_minute | per_day)).any().over(USER_ID) & user.is_not_null()


def row_rules(config: NightrecConfig, run_date: date) -> dict[str, RowRule]:
    """Rule name -> rule; the order is the order of ``reasons``."""
    v = config.validation
    rules = [RowRule(f"null_{c}", MISSING, pl.col(c).is_null(), f"'{c}' is missing") for c in KEY_COLUMNS]
    rules += [
        RowRule(f"malformed_{c}", NOISY, _blank(c), f"'{c}' is an empty or blank string") for c in (USER_ID, ITEM_ID)
    ]
    rules += [
        RowRule("malformed_timestamp", NOISY, pl.col(RAW_TIMESTAMP).is_not_null(), "'timestamp' is not a timestamp"),
        RowRule("malformed_value", NOISY, pl.col(RAW_VALUE).is_not_null(), "'value' is not a number"),
        RowRule(
            "unknown_event_type",
            NOISY,
            pl.col(EVENT_TYPE).is_not_null() & ~pl.col(EVENT_TYPE).is_in(config.event_types),
            f"'event_type' not in {', '.join(config.event_types)}",
        ),
        RowRule(
            "future_timestamp",
            NOISY,
            pl.col(TIMESTAMP) >= latest_allowed(config, run_date),
            f"'timestamp' at or after the run's end plus {v.clock_skew_minutes} min of clock skew",
        ),
    ]
    oldest = retention_start(config, run_date)
    if oldest is not None:
        rules.append(
            RowRule(
                "before_retention",
                NOISY,
                pl.col(TIMESTAMP) < oldest,
                f"'timestamp' older than {v.retention_days} days",
            )
        )
    rules += [
        RowRule(
            DUPLICATE,
            NOISY,
            ~pl.struct(*EVENT_SCHEMA, *RAW_COLUMNS).is_first_distinct(),
            "an exact copy of an earlier row (the first copy stays clean)",
        ),
        RowRule(
            BOT_USER,
            NOISY,
            _bot_expr(config),
            f"user above {v.bot_events_per_minute} events/minute or {v.bot_events_per_day} events/day",
        ),
    ]
    return {rule.name: rule for rule in rules}


def flag_column(name: str) -> str:
    return f"__rule_{name}"


@dataclass(frozen=True)
class QuarantineSplit:
    clean: pl.DataFrame
    quarantine: pl.DataFrame
    counts: dict[str, int]
    samples: dict[str, list[dict]]
    flags: pl.DataFrame  # one boolean column per rule, aligned with the input rows

    @property
    def summary(self) -> dict:
        return {
            "rows_in": self.clean.height + self.quarantine.height,
            "rows_clean": self.clean.height,
            "rows_quarantined": self.quarantine.height,
            "by_reason": self.counts,
        }


def split_quarantine(events: pl.DataFrame, rules: dict[str, RowRule]) -> QuarantineSplit:
    """Split ``events`` into clean rows (the contract's columns) and quarantined rows.

    Quarantined rows keep every input column plus ``reasons``, the list of the rules they broke.
    Raises ``NightrecError`` if the two parts do not add up to the input.
    """
    flag_cols = [flag_column(name) for name in rules]
    flags = events.select(rule.expr.fill_null(False).alias(flag_column(name)) for name, rule in rules.items())
    flagged = pl.any_horizontal(flag_cols) if flag_cols else pl.repeat(False, pl.len())
    marked = pl.concat([events, flags], how="horizontal")
    clean = marked.filter(~flagged).select(*EVENT_SCHEMA)
    reasons = pl.concat_list(
        pl.when(pl.col(flag_column(name))).then(pl.lit(name)).otherwise(pl.lit(None, dtype=pl.String)) for name in rules
    ).list.drop_nulls()
    quarantine = (
        marked.filter(flagged).with_columns(reasons.alias(REASONS)).select(*EVENT_SCHEMA, *RAW_COLUMNS, REASONS)
    )
    totals = flags.select(pl.col(flag_cols).sum()).row(0) if flag_cols else ()
    counts = {name: int(n) for name, n in zip(rules, totals, strict=True)}
    if clean.height + quarantine.height != events.height:
        raise NightrecError(
            f"quarantine lost rows: {events.height} in, {clean.height} clean + {quarantine.height} quarantined"
        )
    samples = {
        name: quarantine.filter(pl.col(REASONS).list.contains(name)).head(SAMPLE_ROWS).drop(REASONS).to_dicts()
        for name, n in counts.items()
        if n
    }
    return QuarantineSplit(clean=clean, quarantine=quarantine, counts=counts, samples=samples, flags=flags)
