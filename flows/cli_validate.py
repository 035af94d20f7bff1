"""``nightrec validate PATH``: run the validation suites alone and print their results."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from expectations.load import explain_unusable, load_events
from expectations.report import HEADERS, exit_code, table_rows
from expectations.runner import validate_events
from flows.app import ConfigOpt, DataDirOpt, RunDateOpt, app, build_config, console
from nightrec.ingest.readers import FORMATS
from nightrec.ingest.runs import run_date_after

STYLES = {"pass": "green", "warn": "yellow", "error": "bold red"}


@app.command("validate")
def validate(
    path: Annotated[str, typer.Argument(help="Events: a file, folder or glob.")],
    run_date: RunDateOpt = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write clean/quarantine Parquet, validation.json, data_docs/.")
    ] = None,
) -> None:
    """Validate events and print each expectation's result. Exit code 0 clean, 1 warnings, 2 errors."""
    config = build_config(config_file, events=path, run_date=run_date, data_dir=data_dir, format=fmt)
    loaded = load_events(path, config.format)
    if config.run_date is None:
        explain_unusable(loaded, path)
    night = config.run_date or run_date_after(loaded.events, path)
    report = validate_events(loaded, config, night, out, source=path)
    table = Table(title=f"nightrec validate {path} - run date {night}")
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
    raise typer.Exit(exit_code(report))
