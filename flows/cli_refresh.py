"""``nightrec refresh``: one intra-day refresh on this machine (``flows.refresh``)."""

from flows.app import (
    ConfigOpt,
    DataDirOpt,
    EventsOpt,
    FormatOpt,
    JsonOpt,
    app,
    build_config,
    console,
    plain,
    print_json,
)


@app.command()
def refresh(
    events: EventsOpt = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    fmt: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-score only the users with events since the last run, and publish their rows."""
    config = build_config(config_file, events=events, data_dir=data_dir, format=fmt)
    from flows.ephemeral import tied_server
    from flows.refresh import load_summary
    from flows.refresh import refresh as refresh_flow

    with tied_server():
        summary = load_summary(refresh_flow(config=config, return_state=True))
    if as_json:
        print_json(summary)
        return
    if "skipped" in summary:
        console.print(plain(summary["skipped"]))
        return
    v = summary["validation"]
    console.print(
        plain(
            f"refresh of night {summary['run_date']}: {summary['users_refreshed']} users refreshed from "
            f"{v['rows_in']} new events ({v['rows_quarantined']} quarantined) in {summary['seconds']['total']:.1f} s"
        )
    )
