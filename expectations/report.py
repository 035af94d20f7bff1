"""Turning a validation report into what a person reads: a Markdown summary and table rows."""

from expectations.runner import OK

EXIT_CODES = {OK: 0, "warn": 1, "error": 2}
HEADERS = ("group", "expectation", "severity", "result", "observed", "threshold")


def outcome(record: dict) -> str:
    """``pass``, ``warn`` (rows quarantined within the limit, or a failed ``warning`` expectation) or ``error``."""
    return record["outcome"]


def observed(record: dict) -> str:
    """The observed value as a short text: ``n of N rows (p%)`` for row checks."""
    if record.get("exception"):
        return f"GX error: {record['exception']}"
    count, total = record.get("unexpected_count"), record.get("element_count")
    if count is not None and record.get("batch") != "night":
        if not total:
            return "no rows"
        noun = {"users": "users", "items": "items", "columns": "columns"}.get(record.get("batch"), "rows")
        return f"{count} of {total} {noun} ({count / total:.2%})"
    value = record.get("observed_value")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "n/a" if value is None else str(value)


def table_rows(report: dict) -> list[tuple[str, ...]]:
    """One row per expectation, in the order of ``HEADERS``."""
    return [
        (r["group"], r["name"], r["severity"], outcome(r), observed(r), r["threshold"]) for r in report["expectations"]
    ]


def exit_code(report: dict) -> int:
    """0 clean, 1 warnings, 2 errors."""
    return EXIT_CODES[report["status"]]


def markdown_summary(report: dict) -> str:
    """The night's data quality in Markdown, for the flow's Prefect artifact."""
    night = report["night"]
    verdict = {OK: "clean", "warn": "warnings (offending rows quarantined)", "error": "ERRORS (run stopped)"}
    lines = [
        f"# Data validation {report['run_date']}: {verdict[report['status']]}",
        "",
        f"- rows in **{report['rows_in']}**, clean **{report['rows_clean']}**, "
        f"quarantined **{report['rows_quarantined']}** (reconciled: {'yes' if report['reconciled'] else 'NO'})",
        f"- tonight ({night['start'][:10]}): {night['night_rows']} events, {night['night_users']} users, "
        f"{night['night_items']} items; volume ratio to trailing median: "
        + ("n/a (not enough history)" if night["volume_ratio"] is None else f"{night['volume_ratio']:.2f}"),
    ]
    missing = {c: rate for c, rate in night["missing_rate"].items() if rate}
    if missing:
        lines.append("- missing rate: " + ", ".join(f"{c} {rate:.2%}" for c, rate in missing.items()))
    if report["files"].get("data_docs"):
        checkpoint = report.get("checkpoint") or {}
        lines.append(
            f"- Data Docs: `{report['files']['data_docs']}` (Checkpoint `{checkpoint.get('name')}`, "
            f"run name `{checkpoint.get('run_name')}`)"
        )
    flagged = [r for r in report["expectations"] if r["outcome"] != "pass"]
    if flagged:
        lines += [
            "",
            "## Warnings and errors",
            "",
            "| expectation | group | result | GX severity | observed | expected |",
        ]
        lines.append("|---|---|---|---|---|---|")
        lines += [
            f"| {r['name']} | {r['group']} | {r['outcome']} | {r['severity']} | {observed(r)} | {r['threshold']} |"
            for r in flagged
        ]
    quarantined = {name: n for name, n in report["by_reason"].items() if n}
    if quarantined:
        lines += ["", "## Quarantine by reason", "", "| reason | rows |", "|---|---|"]
        lines += [f"| {name} | {n} |" for name, n in quarantined.items()]
    passed = sum(r["success"] for r in report["expectations"])
    lines += ["", f"{passed} of {len(report['expectations'])} expectations passed."]
    return "\n".join(lines) + "\n"
