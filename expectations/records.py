"""The Checkpoint's results as report records: one per expectation, in report order."""

from datetime import date

from expectations.rules import MISSING, NOISY, SPARSE
from expectations.suites import ERROR, SUITE_PREFIX, WARN, threshold
from nightrec.config import NightrecConfig

SAMPLE = 5
_ORDER = (MISSING, NOISY, SPARSE)


def _jsonable(value):
    if isinstance(value, float) and value != value:  # NaN is how pandas shows a missing value
        return None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _severity(config) -> str:
    severity = config.severity
    return str(getattr(severity, "value", severity) or "critical")


def record(result, batch: str, config: NightrecConfig, run_date: date, descriptions: dict[str, str]) -> dict:
    """One expectation's result; ``outcome`` is ``pass``, ``warn`` or ``error`` (a failed ``critical`` one)."""
    exp = result.expectation_config
    meta, kwargs = exp.meta or {}, dict(exp.kwargs)
    column = kwargs.get("column")
    name = meta.get("name") or f"{exp.type}:{column or batch}"  # an expectation a user added
    res = result.result or {}
    raised = (result.exception_info or {}).get("raised_exception")
    count, total = res.get("unexpected_count"), res.get("element_count")
    observed = res.get("observed_value")
    if observed is None and count is not None and total:
        observed = count / total
    severity = _severity(exp)
    success = bool(result.success) and not raised
    expected = threshold(name, config, run_date, kwargs)
    if name in descriptions:
        expected = f"{expected}: {descriptions[name]}"
    return {
        "name": name,
        "group": meta.get("group", "custom"),
        "severity": severity,
        "success": success,
        "outcome": "pass" if success else ERROR if severity == "critical" else WARN,
        "expectation": exp.type,
        "column": column,
        "batch": batch,
        "threshold": expected,
        "observed_value": _jsonable(observed),
        "element_count": total,
        "unexpected_count": count,
        "unexpected_percent": res.get("unexpected_percent"),
        "sample": _jsonable(res.get("partial_unexpected_list", [])[:SAMPLE]),
        "exception": (result.exception_info or {}).get("exception_message") if raised else None,
    }


def records_of(checkpoint_result, config: NightrecConfig, run_date: date, descriptions: dict[str, str]) -> list[dict]:
    """Every expectation the Checkpoint ran: missing, noisy, sparse, then any a user added."""
    found = []
    for suite_result in checkpoint_result.run_results.values():
        batch = suite_result.suite_name.removeprefix(SUITE_PREFIX)
        found += [record(r, batch, config, run_date, descriptions) for r in suite_result.results]
    rank = {group: i for i, group in enumerate(_ORDER)}
    return sorted(found, key=lambda r: rank.get(r["group"], len(_ORDER)))
