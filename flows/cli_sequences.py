"""``nightrec sequences --events PATH``: build the sequences folder from events and print its statistics."""

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


@app.command()
def sequences(
    path: EventsArg = None,
    events: EventsOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default <data-dir>/runs/<run-date>/sequences).")
    ] = None,
    run_date: RunDateOpt = None,
    fmt: FormatOpt = None,
    previous_vocab: Annotated[
        Path | None,
        typer.Option("--previous-vocab", help="Last night's sequences or model folder: keep its item and user ids."),
    ] = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build per-user sequences, vocabularies and the configured split from clean events; print the statistics."""
    from nightrec.ingest.readers import read_events
    from nightrec.ingest.runs import default_run_date, require_source
    from nightrec.sequences.build import build_sequences, write_run_sequences, write_sequences

    config = build_config(
        config_file, events=events_path(events, path), run_date=run_date, data_dir=data_dir, format=fmt
    )
    source = require_source(config)
    with progress(f"building sequences from {source}"):
        seqs = build_sequences(read_events(source, config.format), config.sequences, previous_vocab)
        if out is not None:
            written = write_sequences(seqs, out)
        else:
            written = write_run_sequences(seqs, config.run_dir(config.run_date or default_run_date(config)))
    stats = {k: v for k, v in seqs.stats.items() if k != "config"}
    if as_json:
        print_json({**stats, "out": written})
        return
    _print_stats(stats)
    console.print(
        f"{stats['users']} users, {stats['items']} items, {stats['interactions']} interactions; "
        f"{stats['split']['kind']}: {stats['split']['valid_targets']} valid / {stats['split']['test_targets']} test "
        f"targets -> {written}",
        highlight=False,
        soft_wrap=True,
    )


def _print_stats(stats: dict) -> None:
    """The statistics as a two-column table, nested keys joined with '.'."""
    from rich.table import Table

    table = Table(title="sequences")
    table.add_column("statistic")
    table.add_column("value", overflow="fold")
    for key, value in _flatten(stats):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


def _flatten(stats: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in stats.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows
