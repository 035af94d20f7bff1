"""Row-level rules: each is a Polars expression that is True on a row that breaks it.

A row breaking any rule goes to quarantine with every rule it broke in ``reasons``; the rest is
clean. Nothing is lost: ``rows_in == rows_clean + rows_quarantined`` is checked here.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from nightrec.config import NightrecConfig
from nightrec.errors import NightrecError
from nightrec.schema import EVENT_TYPE, KEY_COLUMNS, TIMESTAMP

REASONS = "reasons"


def run_start(run_date: date) -> datetime:
    """The run covers events strictly before midnight UTC of the run date."""
    return datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)


def row_rules(config: NightrecConfig, run_date: date) -> dict[str, pl.Expr]:
    """Rule name -> expression that flags offending rows."""
    rules = {f"null_{column}": pl.col(column).is_null() for column in KEY_COLUMNS}
    rules["unknown_event_type"] = pl.col(EVENT_TYPE).is_not_null() & ~pl.col(EVENT_TYPE).is_in(config.event_types)
    latest = run_start(run_date) + timedelta(minutes=config.validation.clock_skew_minutes)
    rules["future_timestamp"] = pl.col(TIMESTAMP) >= latest
    return rules


@dataclass(frozen=True)
class QuarantineSplit:
    clean: pl.DataFrame
    quarantine: pl.DataFrame
    counts: dict[str, int]

    @property
    def summary(self) -> dict:
        return {
            "rows_in": self.clean.height + self.quarantine.height,
            "rows_clean": self.clean.height,
            "rows_quarantined": self.quarantine.height,
            "by_reason": self.counts,
        }


def split_quarantine(events: pl.DataFrame, rules: dict[str, pl.Expr]) -> QuarantineSplit:
    """Split ``events`` into clean rows and quarantined rows with a ``reasons`` list column."""
    flags = events.with_columns(*(expr.fill_null(False).alias(f"__{name}") for name, expr in rules.items()))
    flag_cols = [f"__{name}" for name in rules]
    reasons = pl.concat_list(
        pl.when(pl.col(f"__{name}")).then(pl.lit(name)).otherwise(pl.lit(None, dtype=pl.String)) for name in rules
    ).list.drop_nulls()
    flagged = pl.any_horizontal(flag_cols)
    clean = flags.filter(~flagged).drop(flag_cols)
    quarantine = flags.filter(flagged).with_columns(reasons.alias(REASONS)).drop(flag_cols)
    counts = {name: int(n) for name, n in zip(rules, flags.select(pl.col(flag_cols).sum()).row(0), strict=True)}
    if clean.height + quarantine.height != events.height:
        raise NightrecError(
            f"quarantine lost rows: {events.height} in, {clean.height} clean + {quarantine.height} quarantined"
        )
    return QuarantineSplit(clean=clean, quarantine=quarantine, counts=counts)
