"""``nightrec analyze``: the user behaviour report for an event log, outside the nightly flow."""

from pathlib import Path
from typing import Annotated

import typer

from flows.app import ConfigOpt, EventsOpt, FormatOpt, JsonOpt, app, build_config, console, print_json, progress


@app.command()
def analyze(
    events: EventsOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default <data_dir>/behavior).")] = None,
    fmt: FormatOpt = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="An earlier behavior.json (or its folder) to compare with.")
    ] = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write report.html (self-contained), behavior.json and figures describing user behaviour."""
    from nightrec.behavior.report import write_behavior_report
    from nightrec.ingest.readers import read_events
    from nightrec.ingest.runs import require_source
    from nightrec.layout import BEHAVIOR_DIR

    config = build_config(config_file, events=events, format=fmt)
    source = require_source(config)
    out = out or config.data_dir / BEHAVIOR_DIR
    with progress(f"reading {source}"):
        frame = read_events(source, config.format)
    with progress(f"analysing {frame.height:,} events into {out}"):
        report = write_behavior_report(frame, out, config, previous)
    head = report["headline"]
    if as_json:
        print_json({key: report[key] for key in ("headline", "report_html", "behavior_json", "drift", "drift_message")})
        return
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
