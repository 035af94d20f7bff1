"""``nightrec validate --events PATH``: run the validation suites alone and print their results."""

from pathlib import Path
from typing import Annotated

import typer

from flows.app import (
    ConfigOpt,
    DataDirOpt,
    EventsArg,
    EventsOpt,
    FormatOpt,
    JsonOpt,
    RunDateOpt,
    app,
    build_config,
    console,
    events_path,
    print_json,
    progress,
)

STYLES = {"pass": "green", "warn": "yellow", "error": "bold red"}


@app.command("validate")
def validate(
    path: EventsArg = None,
    events: EventsOpt = None,
    run_date: RunDateOpt = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    fmt: FormatOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write clean/quarantine Parquet and validation.json.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate events and print each expectation's result. Exit code 0 clean, 1 warnings, 2 errors."""
    # Great Expectations takes seconds to import: only a command that validates pays for it.
    from expectations.load import explain_unusable, load_events, require_columns
    from expectations.report import exit_code
    from expectations.runner import validate_events
    from nightrec.ingest.runs import require_source, run_date_after

    config = build_config(
        config_file, events=events_path(events, path), run_date=run_date, data_dir=data_dir, format=fmt
    )
    source = str(require_source(config))
    with progress(f"reading {source}"):
        loaded = load_events(source, config.format)
    require_columns(loaded)  # a missing column is named before any rule blames its nulls
    if config.run_date is None:
        explain_unusable(loaded, source)
    night = config.run_date or run_date_after(loaded.events, source)
    with progress(f"validating {loaded.events.height:,} events for run date {night}"):
        report = validate_events(loaded, config, night, out, source=source)
    if as_json:
        print_json(report)
    else:
        _print_report(report, source, night, out)
    raise typer.Exit(exit_code(report))


def _print_report(report: dict, source: str, night, out: Path | None) -> None:
    from rich.table import Table

    from expectations.report import HEADERS, table_rows

    table = Table(title=f"nightrec validate {source} - run date {night}")
    for header in HEADERS:
        # Names stay whole; the free-text columns wrap on a narrow terminal.
        table.add_column(header, overflow="fold", no_wrap=header not in ("observed", "threshold"))
    for row in table_rows(report):
        table.add_row(*row, style=STYLES[row[3]] if row[3] != "pass" else None)
    console.print(table)
    console.print(
        f"{report['status'].upper()}: rows in {report['rows_in']}, clean {report['rows_clean']}, "
        f"quarantined {report['rows_quarantined']}"
        + "".join(f"; {name} {n}" for name, n in report["by_reason"].items() if n)
        + (f"; report {out}" if out else ""),
        highlight=False,
    )
