"""``nightrec sequences``: build the sequences folder from an events file and print its statistics."""

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.app import ConfigOpt, DataDirOpt, RunDateOpt, app, build_config, console
from nightrec.ingest.readers import FORMATS, read_events
from nightrec.ingest.runs import default_run_date
from nightrec.sequences.build import build_sequences, write_run_sequences, write_sequences


@app.command()
def sequences(
    path: Annotated[str, typer.Argument(help="Clean events: a file, folder or glob.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default <data-dir>/runs/<run-date>/sequences).")
    ] = None,
    run_date: RunDateOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")] = None,
    previous_vocab: Annotated[
        Path | None,
        typer.Option("--previous-vocab", help="Last night's sequences or model folder: keep its item and user ids."),
    ] = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
) -> None:
    """Build per-user sequences, vocabularies and the configured split; print the statistics."""
    config = build_config(config_file, events=path, run_date=run_date, data_dir=data_dir, format=fmt)
    events = read_events(path, config.format)
    seqs = build_sequences(events, config.sequences, previous_vocab)
    if out is not None:
        written = write_sequences(seqs, out)
    else:
        written = write_run_sequences(seqs, config.run_dir(config.run_date or default_run_date(config)))
    stats = {k: v for k, v in seqs.stats.items() if k != "config"}
    console.print_json(json.dumps(stats, default=str))
    console.print(
        f"{stats['users']} users, {stats['items']} items, {stats['interactions']} interactions; "
        f"{stats['split']['kind']}: {stats['split']['valid_targets']} valid / {stats['split']['test_targets']} test "
        f"targets -> {written}"
    )
