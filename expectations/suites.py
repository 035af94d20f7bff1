"""The expectation suites, built in code from the schema's constants, and running them in GX.

GX is the engine of record for the verdict and for Data Docs. It sees the full events frame for
the rules it can state over single values (nulls, sets, ranges) and, for the rules it cannot
(exact duplicates, bot users) or only slowly (blank IDs, a regex over every ID), one indicator
column per rule computed by Polars; both must agree with the quarantine masks row for row. Every
row rule is stated twice: a ``warn`` expectation that any offending row breaks, and an ``error``
expectation that tolerates the configured share of offending rows (GX's ``mostly``).
"""

import threading
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

from expectations.frames import ALLOWED_KINDS, html_text
from expectations.load import RAW_TIMESTAMP, RAW_VALUE
from expectations.rules import (
    INDICATOR_RULES,
    MISSING,
    NOISY,
    SPARSE,
    RowRule,
    latest_allowed,
    retention_start,
)
from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError
from nightrec.schema import EVENT_TYPE, REQUIRED_COLUMNS, TIMESTAMP

ERROR, WARN = "error", "warn"
EVENTS, COLUMNS, NIGHT, USERS, ITEMS = "events", "columns", "night", "users", "items"
DATASOURCE = "nightrec"
DOCS_SITE = "nightrec_run"
SAMPLE = 5
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

_lock = threading.Lock()
_context = None


def gx_context():
    """One ephemeral GX context per process: building it is the expensive part of a small run."""
    global _context
    if _context is None:
        # GX fingerprints every pandas batch under 1 GB with an md5 of the whole frame, a third of
        # the validation time; the fingerprint is only metadata, so it is skipped at every size.
        pandas_execution_engine.HASH_THRESHOLD = 0
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.data_sources.add_pandas(DATASOURCE)
        _context = context
    return _context


@dataclass(frozen=True)
class Check:
    """One expectation with the batch it runs on and what its failure means."""

    name: str
    group: str
    severity: str
    batch: str
    expectation: gxe.Expectation
    threshold: str
    row_rule: bool = False
    meta: dict = field(default_factory=dict)


def _row_expectation(rule: RowRule, config: NightrecConfig, run_date, mostly: float | None) -> gxe.Expectation:
    kw = {} if mostly is None else {"mostly": mostly}
    name = rule.name
    if name.startswith("null_"):
        return gxe.ExpectColumnValuesToNotBeNull(column=name.removeprefix("null_"), **kw)
    if name == "malformed_timestamp":
        return gxe.ExpectColumnValuesToBeNull(column=RAW_TIMESTAMP, **kw)
    if name == "malformed_value":
        return gxe.ExpectColumnValuesToBeNull(column=RAW_VALUE, **kw)
    if name == "unknown_event_type":
        value_set = [html_text(t) for t in config.event_types]  # the column GX sees is escaped
        return gxe.ExpectColumnValuesToBeInSet(column=EVENT_TYPE, value_set=value_set, **kw)
    if name == "future_timestamp":
        latest = latest_allowed(config, run_date).isoformat()
        return gxe.ExpectColumnValuesToBeBetween(column=TIMESTAMP, max_value=latest, strict_max=True, **kw)
    if name == "before_retention":
        oldest = retention_start(config, run_date).isoformat()
        return gxe.ExpectColumnValuesToBeBetween(column=TIMESTAMP, min_value=oldest, **kw)
    if name in INDICATOR_RULES:
        return gxe.ExpectColumnValuesToBeInSet(column=name, value_set=[False], **kw)
    raise ValueError(f"no expectation for rule {name}")


def build_checks(config: NightrecConfig, run_date, rules: dict[str, RowRule]) -> list[Check]:
    """Every expectation of the run, in report order: missing, noisy, sparse."""
    v = config.validation
    for key, known, names in (("severity", NIGHT_SEVERITY, v.severity), ("rule_max_ratio", rules, v.rule_max_ratio)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(
                f"validation.{key}: unknown check(s) {', '.join(unknown)} (expected one of {', '.join(known)})"
            )
    severity = {**NIGHT_SEVERITY, **v.severity}
    checks = [
        Check(
            "required_columns",
            MISSING,
            severity["required_columns"],
            COLUMNS,
            gxe.ExpectColumnDistinctValuesToContainSet(column="column", value_set=list(REQUIRED_COLUMNS)),
            f"columns include {', '.join(REQUIRED_COLUMNS)}",
        ),
        Check(
            "non_empty_input",
            MISSING,
            severity["non_empty_input"],
            EVENTS,
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            "at least 1 row",
        ),
        Check(
            "night_partition",
            MISSING,
            severity["night_partition"],
            NIGHT,
            gxe.ExpectColumnValuesToBeBetween(column="night_rows", min_value=1),
            f"at least 1 event on {run_date.fromordinal(run_date.toordinal() - 1)}",
        ),
    ]
    allowed = [(column, kind) for column, kinds in ALLOWED_KINDS.items() for kind in kinds]
    checks.append(
        Check(
            "column_types",
            NOISY,
            severity["column_types"],
            COLUMNS,
            gxe.ExpectColumnPairValuesToBeInSet(column_A="column", column_B="kind", value_pairs_set=allowed),
            "ids string/integer, timestamp datetime/date/number/text, value number",
        )
    )
    for group in (MISSING, NOISY):
        for rule in (r for r in rules.values() if r.group == group):
            limit = v.rule_max_ratio.get(rule.name, v.max_bad_ratio)
            for sev, mostly, text in ((WARN, None, "no row"), (ERROR, 1.0 - limit, f"at most {limit:.1%} of rows")):
                exp = _row_expectation(rule, config, run_date, mostly)
                checks.append(Check(rule.name, group, sev, EVENTS, exp, f"{text}: {rule.description}", row_rule=True))
    checks += [
        Check(
            "volume",
            SPARSE,
            severity["volume"],
            NIGHT,
            gxe.ExpectColumnValuesToBeBetween(
                column="volume_ratio", min_value=v.volume_min_ratio, max_value=v.volume_max_ratio
            ),
            f"tonight / median of the last {v.volume_nights} nights in "
            f"[{v.volume_min_ratio:g}, {v.volume_max_ratio:g}] (needs {v.volume_min_history} nights)",
        ),
        Check(
            "density",
            SPARSE,
            severity["density"],
            NIGHT,
            gxe.ExpectColumnValuesToBeBetween(column="density", min_value=v.min_density),
            f"events / (users x items) >= {v.min_density:g}",
        ),
        Check(
            "cold_users",
            SPARSE,
            severity["cold_users"],
            USERS,
            gxe.ExpectColumnValuesToBeBetween(
                column="events", min_value=v.min_user_events, mostly=1.0 - v.max_cold_user_ratio
            ),
            f"at most {v.max_cold_user_ratio:.0%} of tonight's users with < {v.min_user_events} events",
        ),
        Check(
            "rare_items",
            SPARSE,
            severity["rare_items"],
            ITEMS,
            gxe.ExpectColumnValuesToBeBetween(
                column="events", min_value=v.min_item_events, mostly=1.0 - v.max_rare_item_ratio
            ),
            f"at most {v.max_rare_item_ratio:.0%} of tonight's items with < {v.min_item_events} events",
        ),
    ]
    order = (MISSING, NOISY, SPARSE)
    checks.sort(key=lambda check: order.index(check.group))
    for check in checks:
        check.expectation.meta = {"name": check.name, "group": check.group, "severity": check.severity}
    return checks


def _jsonable(value):
    if isinstance(value, float) and value != value:  # NaN is how pandas shows a missing value
        return None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _record(check: Check, result) -> dict:
    res = result.result or {}
    raised = (result.exception_info or {}).get("raised_exception")
    count = res.get("unexpected_count")
    total = res.get("element_count")
    observed = res.get("observed_value")
    if observed is None and count is not None and total:
        observed = count / total
    return {
        "name": check.name,
        "group": check.group,
        "severity": check.severity,
        "success": bool(result.success) and not raised,
        "expectation": check.expectation.expectation_type,
        "column": getattr(check.expectation, "column", None),
        "batch": check.batch,
        "threshold": check.threshold,
        "observed_value": _jsonable(observed),
        "element_count": total,
        "unexpected_count": count,
        "unexpected_percent": res.get("unexpected_percent"),
        "sample": _jsonable(res.get("partial_unexpected_list", [])[:SAMPLE]),
        "exception": (result.exception_info or {}).get("exception_message") if raised else None,
    }


def _docs_site(context, out: Path) -> None:
    for name in list(context.get_config().data_docs_sites or {}):
        context.delete_data_docs_site(name)
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            # GX rejects a relative base_directory (the default data dir, ./nightrec-data, is relative).
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )


def run_checks(checks: list[Check], batches: dict[str, pl.DataFrame], docs_dir: Path | None) -> list[dict]:
    """Validate each batch against its suites in GX; build Data Docs into ``docs_dir`` if given.

    Returns one record per check, in the order of ``checks``.
    """
    with _lock:
        context = gx_context()
        store = context.validation_results_store
        for key in store.list_keys():  # the docs of this run show this run only
            store.remove_key(key)
        source = context.data_sources.get(DATASOURCE)
        records: dict[int, dict] = {}
        frames: dict[str, object] = {}
        suites: dict[tuple[str, str], list[int]] = {}
        for i, check in enumerate(checks):
            suites.setdefault((check.group, check.batch), []).append(i)
        for (group, batch), indices in suites.items():
            name = f"{group}.{batch}"
            try:
                asset = source.get_asset(batch)
            except LookupError:
                asset = source.add_dataframe_asset(batch)
            definition = next(iter(asset.batch_definitions), None) or asset.add_batch_definition_whole_dataframe(
                "whole"
            )
            suite = context.suites.add_or_update(
                gx.ExpectationSuite(name=name, expectations=[checks[i].expectation for i in indices])
            )
            validation = context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=definition, suite=suite)
            )
            if batch not in frames:
                frames[batch] = batches[batch].to_pandas()
            result = validation.run(
                batch_parameters={"dataframe": frames[batch]},
                result_format={"result_format": "BASIC", "partial_unexpected_count": SAMPLE},
            )
            by_key = {(checks[i].name, checks[i].severity): i for i in indices}
            for res in result.results:
                meta = res.expectation_config.meta or {}
                i = by_key[(meta["name"], meta["severity"])]
                records[i] = _record(checks[i], res)
        if docs_dir is not None:
            _docs_site(context, docs_dir)
            context.build_data_docs(site_names=[DOCS_SITE])
    return [records[i] for i in range(len(checks))]
