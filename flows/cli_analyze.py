"""``nightrec analyze``: the user behaviour report for an event log, outside the nightly flow."""

from pathlib import Path
from typing import Annotated

import typer

from flows.app import ConfigOpt, app, build_config, console
from nightrec.ingest.readers import FORMATS, read_events
from nightrec.layout import BEHAVIOR_DIR


@app.command()
def analyze(
    events: Annotated[str, typer.Option("--events", help="Events: file, folder or glob.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default <data_dir>/behavior).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")] = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="An earlier behavior.json (or its folder) to compare with.")
    ] = None,
    config_file: ConfigOpt = None,
) -> None:
    """Write report.html (self-contained), behavior.json and figures describing user behaviour."""
    from nightrec.behavior.report import write_behavior_report

    config = build_config(config_file, events=events, format=fmt)
    out = out or config.data_dir / BEHAVIOR_DIR
    report = write_behavior_report(read_events(events, config.format), out, config, previous)
    head = report["headline"]
    console.print(
        f"analysed {head['events']:,} events, {head['users']:,} users, {head['items']:,} items over "
        f"{head['days']} day(s) -> {report['report_html']} and {report['behavior_json']}",
        highlight=False,
        soft_wrap=True,
    )
    funnel = report["funnel_summary"]
    console.print(f"funnel: {funnel}", highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"{'DRIFT' if report['drift'] else 'trend'}: {report['drift_message']}", highlight=False, markup=False
    )
