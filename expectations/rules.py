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
# Rules GX cannot state over single values (or only slowly, as a regex on every ID); it sees them
# as indicator columns named after the rule.
INDICATOR_RULES = ("malformed_user_id", "malformed_item_id", DUPLICATE, BOT_USER)
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


def bot_users(events: pl.DataFrame, config: NightrecConfig) -> pl.Series:
    """Users above the per-minute or per-day limit at least once.

    Only users with more events in all than the lower limit can break it, so the fine-grained
    group-bys run on their rows alone (a group-by per user and minute over every row is slow).
    """
    v = config.validation
    user, ts = pl.col(USER_ID), pl.col(TIMESTAMP)
    known = events.lazy().filter(user.is_not_null() & ts.is_not_null())
    heavy = known.group_by(user).len().filter(pl.col("len") > min(v.bot_events_per_minute, v.bot_events_per_day))
    candidates = known.join(heavy.select(user), on=USER_ID, how="semi")
    limits = ((ts.dt.truncate("1m"), v.bot_events_per_minute), (ts.dt.date(), v.bot_events_per_day))
    found = [
        candidates.group_by(user, bucket.alias("__bucket")).len().filter(pl.col("len") > limit).select(user)
        for bucket, limit in limits
    ]
    return pl.concat(found).unique().collect().get_column(USER_ID)


def duplicate_rows(events: pl.DataFrame) -> pl.Series:
    """True on every exact copy of an earlier row.

    Rows are compared by a 64-bit hash first; only rows whose hash repeats are compared in full,
    so a hash collision can never quarantine a row.
    """
    columns = [*EVENT_SCHEMA, *RAW_COLUMNS]
    repeated = events.select(pl.struct(columns).hash().is_duplicated()).to_series()
    candidates = events.with_row_index("__row").filter(repeated)
    later = candidates.filter(~pl.struct(columns).is_first_distinct()).get_column("__row")
    return pl.repeat(False, events.height, eager=True).alias(DUPLICATE).scatter(later, True)


def row_rules(config: NightrecConfig, run_date: date, events: pl.DataFrame) -> dict[str, RowRule]:
    """Rule name -> rule for ``events``; the order is the order of ``reasons``."""
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
            pl.lit(duplicate_rows(events)),
            "an exact copy of an earlier row (the first copy stays clean)",
        ),
        RowRule(
            BOT_USER,
            NOISY,
            pl.col(USER_ID).is_in(bot_users(events, config).implode()),
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


def rule_flags(events: pl.DataFrame, rules: dict[str, RowRule]) -> pl.DataFrame:
    """One boolean column per rule (``flag_column``), aligned with ``events``: True where broken."""
    return events.select(rule.expr.fill_null(False).alias(flag_column(name)) for name, rule in rules.items())


def split_quarantine(
    events: pl.DataFrame, rules: dict[str, RowRule], flags: pl.DataFrame | None = None
) -> QuarantineSplit:
    """Split ``events`` into clean rows (the contract's columns) and quarantined rows.

    Quarantined rows keep every input column plus ``reasons``, the list of the rules they broke.
    ``flags`` are the rules' masks when they were computed elsewhere (per user shard, then put
    back in the events' order); by default they are computed here. Raises ``NightrecError`` if
    the two parts do not add up to the input.
    """
    flag_cols = [flag_column(name) for name in rules]
    flags = rule_flags(events, rules) if flags is None else flags.select(flag_cols)
    if flags.height != events.height:
        raise NightrecError(f"quarantine: {flags.height} rows of rule flags for {events.height} events")
    flagged = flags.select(pl.any_horizontal(flag_cols) if flag_cols else pl.repeat(False, pl.len())).to_series()
    clean = events.filter(~flagged).select(*EVENT_SCHEMA)
    reasons = pl.concat_list(
        pl.when(pl.col(flag_column(name))).then(pl.lit(name)).otherwise(pl.lit(None, dtype=pl.String)) for name in rules
    ).list.drop_nulls()
    quarantine = pl.concat(
        [
            events.filter(flagged).select(*EVENT_SCHEMA, *RAW_COLUMNS),
            flags.filter(flagged).select(reasons.alias(REASONS)),
        ],
        how="horizontal",
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
