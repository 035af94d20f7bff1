"""The ``nightrec`` command line: the core commands and the entry point.

User errors (``NightrecError``) print one line and exit with code 2.
"""

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.app import ConfigOpt, DataDirOpt, RunDateOpt, app, build_config, console, err_console
from nightrec.errors import NightrecError
from nightrec.readers import FORMATS, check_source
from nightrec.runs import require_source
from nightrec.synthetic import FaultSpec, SyntheticSpec, write_demo_data


@app.command()
def run(
    events: Annotated[
        str | None, typer.Option("--events", help="Events: file, folder or glob (NIGHTREC_EVENTS).")
    ] = None,
    run_date: RunDateOpt = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="List length (NIGHTREC_K, default 20).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")] = None,
) -> None:
    """Run the nightly flow once on this machine (ephemeral Prefect unless PREFECT_API_URL is set)."""
    config = build_config(config_file, events=events, run_date=run_date, data_dir=data_dir, k=k, format=fmt)
    check_source(require_source(config), config.format)
    from flows.nightly import nightly
    from flows.tasks import resolve_run_date

    if config.run_date is None:
        config = config.model_copy(update={"run_date": resolve_run_date.fn(config)})
    result = nightly(config=config)
    published = result["published"]
    console.print(
        f"run {result['run_date']}: {published['rows']} recommendations for {published['users']} users "
        f"-> {published['targets'].get('duckdb') or published['targets'].get('parquet')}"
    )


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="Folder for the Parquet files.")],
    users: Annotated[int, typer.Option("--users", min=1)] = 1000,
    items: Annotated[int, typer.Option("--items", min=2)] = 500,
    days: Annotated[int, typer.Option("--days", min=1)] = 7,
    faults: Annotated[bool, typer.Option("--faults", help="Inject faults of known counts.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="Last day of data (default yesterday, UTC).")
    ] = None,
) -> None:
    """Write a synthetic event log (Parquet, one file per day) and its manifest."""
    spec = SyntheticSpec(users=users, items=items, days=days, seed=seed)
    if end_date:
        spec = SyntheticSpec(users=users, items=items, days=days, seed=seed, end_date=date.fromisoformat(end_date))
    manifest = write_demo_data(out, spec, FaultSpec() if faults else None)
    console.print(
        f"wrote {manifest['rows']} events for {users} users, {items} items, {manifest['first_date']}.."
        f"{manifest['end_date']} to {out}" + (f" with faults {manifest['faults']}" if faults else "")
    )


@app.command()
def recommend(
    user_id: Annotated[str | None, typer.Argument(help="External user id.")] = None,
    data_dir: DataDirOpt = None,
    run_date: RunDateOpt = None,
    sample: Annotated[int, typer.Option("--sample", help="Print the lists of the first N users instead.")] = 0,
) -> None:
    """Print one user's published list (latest run unless --run-date)."""
    from nightrec.publish import read_user_recommendations, sample_users

    config = build_config(None, data_dir=data_dir, run_date=run_date)
    users = sample_users(config.duckdb_path, sample) if sample else [user_id]
    if users == [None]:
        raise NightrecError("give a USER_ID or --sample N")
    for user in users:
        recs = read_user_recommendations(config.duckdb_path, user, config.run_date)
        if recs.is_empty():
            err_console.print(f"user '{user}' has no published list in {config.duckdb_path}")
            raise typer.Exit(1)
        table = Table(title=f"user {user} - {recs['run_date'][0]} - {recs['model_version'][0]}")
        for column in ("rank", "item_id", "score", "source"):
            table.add_column(column)
        for row in recs.iter_rows(named=True):
            table.add_row(str(row["rank"]), row["item_id"], f"{row['score']:.4f}", row["source"])
        console.print(table)


# Further command modules register on `app` when imported; one import line each, kept sorted.
# (e.g. `import flows.cli_validate` with a noqa for E402 and F401)
import flows.cli_sequences  # noqa: E402, F401


def main() -> None:
    try:
        app()
    except NightrecError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False) if False else print(
            f"error: {exc}", file=sys.stderr
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
