"""The expectation suites nightrec ships, one per batch GX validates, and the night's parameters.

These are written into the GX project on first use (``expectations/project.py``) and from then on
the saved suites are what runs, so an edit there takes effect. Row rules are stated once, on the
real columns where GX can state them (nulls, the event-type set, the timestamp's bounds), else on
one indicator column per rule computed by Polars (blank IDs, exact duplicates, bot users), with
native GX severity and GX's ``mostly`` as the share of offending rows a night tolerates. Values
that change with the night or the config are suite parameters (``{"$PARAMETER": name}``) filled
by ``suite_parameters``.
"""

from datetime import date, datetime

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.frames import ALLOWED_KINDS, html_text
from expectations.load import RAW_TIMESTAMP, RAW_VALUE
from expectations.rules import INDICATOR_RULES, MISSING, NOISY, SPARSE, latest_allowed, retention_start
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.schema import EVENT_TYPE, KEY_COLUMNS, REQUIRED_COLUMNS, TIMESTAMP

ERROR, WARN = "error", "warn"
# nightrec's words for a check's severity, and GX's native ones
NATIVE = {ERROR: "critical", WARN: "warning"}
EVENTS, COLUMNS, NIGHT, USERS, ITEMS = "events", "columns", "night", "users", "items"
BATCHES = (EVENTS, COLUMNS, NIGHT, USERS, ITEMS)
SUITE_PREFIX = "nightrec_"
# Night-level checks and their default severity; config.validation.severity overrides them.
NIGHT_SEVERITY = {
    "required_columns": ERROR,
    "non_empty_input": ERROR,
    "night_partition": ERROR,
    "column_types": WARN,
    "volume": ERROR,
    "density": WARN,
    "cold_users": WARN,
    "rare_items": WARN,
}
ROW_RULES = (
    *(f"null_{c}" for c in KEY_COLUMNS),
    "malformed_user_id",
    "malformed_item_id",
    "malformed_timestamp",
    "malformed_value",
    "unknown_event_type",
    "future_timestamp",
    "before_retention",
    "duplicate",
    "bot_user",
)
# pandas holds instants from 1677 on: the lower bound when no retention is configured
NO_RETENTION = "1678-01-01T00:00:00+00:00"


def suite_name(batch: str) -> str:
    return f"{SUITE_PREFIX}{batch}"


def _param(name: str) -> dict:
    return {"$PARAMETER": name}


def _mostly(rule: str) -> dict:
    return _param(f"{rule}_mostly")


def _row_expectation(rule: str) -> gxe.Expectation:
    """The rule on the real column where GX can state it, else on the rule's indicator column."""
    kw = {"mostly": _mostly(rule)}
    if rule.startswith("null_"):
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.removeprefix("null_"), **kw)
    if rule == "malformed_timestamp":
        return gxe.ExpectColumnValuesToBeNull(column=RAW_TIMESTAMP, **kw)
    if rule == "malformed_value":
        return gxe.ExpectColumnValuesToBeNull(column=RAW_VALUE, **kw)
    if rule == "unknown_event_type":
        return gxe.ExpectColumnValuesToBeInSet(column=EVENT_TYPE, value_set=_param("event_types"), **kw)
    if rule == "future_timestamp":
        return gxe.ExpectColumnValuesToBeBetween(
            column=TIMESTAMP, max_value=_param("latest_timestamp"), strict_max=True, **kw
        )
    if rule == "before_retention":
        return gxe.ExpectColumnValuesToBeBetween(column=TIMESTAMP, min_value=_param("oldest_timestamp"), **kw)
    if rule in INDICATOR_RULES:
        return gxe.ExpectColumnValuesToBeInSet(column=rule, value_set=[False], **kw)
    raise ValueError(f"no expectation for rule {rule}")


def _night_expectations() -> dict[str, tuple[str, gxe.Expectation]]:
    """Night-level check -> (batch, expectation)."""
    between = gxe.ExpectColumnValuesToBeBetween
    allowed = [[column, kind] for column, kinds in ALLOWED_KINDS.items() for kind in kinds]
    return {
        "required_columns": (
            COLUMNS,
            gxe.ExpectColumnDistinctValuesToContainSet(column="column", value_set=list(REQUIRED_COLUMNS)),
        ),
        "non_empty_input": (EVENTS, gxe.ExpectTableRowCountToBeBetween(min_value=1)),
        "night_partition": (NIGHT, between(column="night_rows", min_value=1)),
        "column_types": (
            COLUMNS,
            gxe.ExpectColumnPairValuesToBeInSet(column_A="column", column_B="kind", value_pairs_set=allowed),
        ),
        "volume": (
            NIGHT,
            between(column="volume_ratio", min_value=_param("volume_min_ratio"), max_value=_param("volume_max_ratio")),
        ),
        "density": (NIGHT, between(column="density", min_value=_param("min_density"))),
        "cold_users": (
            USERS,
            between(column="events", min_value=_param("min_user_events"), mostly=_param("cold_users_mostly")),
        ),
        "rare_items": (
            ITEMS,
            between(column="events", min_value=_param("min_item_events"), mostly=_param("rare_items_mostly")),
        ),
    }


def check_config(config: NightrecConfig) -> None:
    """Raise ``ConfigError`` for a severity or ratio given for a check nightrec does not have."""
    v = config.validation
    for key, known, names in (
        ("severity", NIGHT_SEVERITY, v.severity),
        ("rule_max_ratio", ROW_RULES, v.rule_max_ratio),
    ):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(
                f"validation.{key}: unknown check(s) {', '.join(unknown)} (expected one of {', '.join(known)})"
            )


def default_suites(config: NightrecConfig) -> dict[str, gx.ExpectationSuite]:
    """The suites nightrec ships, by batch: what a new GX project starts from."""
    severity = {**NIGHT_SEVERITY, **config.validation.severity}
    found: dict[str, list[gxe.Expectation]] = {batch: [] for batch in BATCHES}
    night = _night_expectations()
    for name in ("required_columns", "non_empty_input", "night_partition"):
        found[night[name][0]].append(_named(night[name][1], name, MISSING, severity[name]))
    for rule in ROW_RULES:
        group = MISSING if rule.startswith("null_") else NOISY
        found[EVENTS].append(_named(_row_expectation(rule), rule, group, ERROR))
    found[COLUMNS].append(_named(night["column_types"][1], "column_types", NOISY, severity["column_types"]))
    for name in ("volume", "density", "cold_users", "rare_items"):
        found[night[name][0]].append(_named(night[name][1], name, SPARSE, severity[name]))
    return {batch: gx.ExpectationSuite(name=suite_name(batch), expectations=exps) for batch, exps in found.items()}


def _named(expectation: gxe.Expectation, name: str, group: str, severity: str) -> gxe.Expectation:
    expectation.meta = {"name": name, "group": group}
    expectation.severity = NATIVE[severity]
    return expectation


def suite_parameters(config: NightrecConfig, run_date: date) -> dict:
    """The values the saved suites refer to as ``$PARAMETER``: tonight's bounds and the config's limits."""
    v = config.validation
    oldest = retention_start(config, run_date)
    params = {
        "event_types": [html_text(t) for t in config.event_types],  # the column GX sees is escaped
        "latest_timestamp": latest_allowed(config, run_date).isoformat(),
        "oldest_timestamp": oldest.isoformat() if isinstance(oldest, datetime) else NO_RETENTION,
        "volume_min_ratio": v.volume_min_ratio,
        "volume_max_ratio": v.volume_max_ratio,
        "min_density": v.min_density,
        "min_user_events": v.min_user_events,
        "min_item_events": v.min_item_events,
        "cold_users_mostly": 1.0 - v.max_cold_user_ratio,
        "rare_items_mostly": 1.0 - v.max_rare_item_ratio,
    }
    for rule in ROW_RULES:
        params[f"{rule}_mostly"] = 1.0 - v.rule_max_ratio.get(rule, v.max_bad_ratio)
    return params


def threshold(name: str, config: NightrecConfig, run_date: date, kwargs: dict) -> str:
    """What a check expects, in words, for the report."""
    v = config.validation
    if name in ROW_RULES:
        return f"at most {v.rule_max_ratio.get(name, v.max_bad_ratio):.1%} of rows"
    words = {
        "required_columns": f"columns include {', '.join(REQUIRED_COLUMNS)}",
        "non_empty_input": "at least 1 row",
        "night_partition": f"at least 1 event on {date.fromordinal(run_date.toordinal() - 1)}",
        "column_types": "ids string/integer, timestamp datetime/date/number/text, value number",
        "volume": f"tonight / median of the last {v.volume_nights} nights in "
        f"[{v.volume_min_ratio:g}, {v.volume_max_ratio:g}] (needs {v.volume_min_history} nights)",
        "density": f"events / (users x items) >= {v.min_density:g}",
        "cold_users": f"at most {v.max_cold_user_ratio:.0%} of tonight's users with < {v.min_user_events} events",
        "rare_items": f"at most {v.max_rare_item_ratio:.0%} of tonight's items with < {v.min_item_events} events",
    }
    return words.get(name) or ", ".join(f"{k}={val}" for k, val in kwargs.items() if k != "batch_id")
