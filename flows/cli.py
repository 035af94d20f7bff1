"""The ``nightrec`` command line: the core commands and the entry point.

User errors (``NightrecError``) print one line and exit with code 2.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.app import (
    ConfigOpt,
    DataDirOpt,
    EventsOpt,
    FormatOpt,
    ItemsFileOpt,
    JsonOpt,
    RunDateOpt,
    UsersFileOpt,
    app,
    build_config,
    console,
    plain,
    print_json,
)
from nightrec.errors import NightrecError, is_setup_error

if TYPE_CHECKING:
    from nightrec.config import NightrecConfig, PrivacyConfig

# What `score` means depends on the row's source; the table says so rather than mixing them silently.
SCORE_NOTE = (
    "score: the model's logit for `model` rows; the time-decayed event count for `popularity` rows; "
    "the content score for `content` and `new_item` rows"
)
EXIT_UNKNOWN_USER = 1


@app.command()
def run(
    events: EventsOpt = None,
    run_date: RunDateOpt = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    k: Annotated[int | None, typer.Option("--k", help="List length (NIGHTREC_K, default 20).")] = None,
    fmt: FormatOpt = None,
    items_file: ItemsFileOpt = None,
    users_file: UsersFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the nightly flow once on this machine (ephemeral Prefect unless PREFECT_API_URL is set)."""
    from flows.preflight import preflight

    config = build_config(
        config_file, items_file, users_file, events=events, run_date=run_date, data_dir=data_dir, k=k, format=fmt
    )
    preflight(config)
    from flows.ephemeral import tied_server
    from flows.nightly import nightly

    with tied_server():  # an ephemeral server dies with this process, even a SIGKILLed one
        result = nightly(config=config)
    published = result["published"]
    if as_json:
        print_json(result)
        return
    console.print(
        plain(
            f"run {result['run_date']}: {published['rows']} recommendations for {published['users']} users "
            f"-> {published['targets'].get('duckdb') or published['targets'].get('parquet')}"
        )
    )
    if result.get("model_not_refreshed"):
        console.print(plain(f"degraded: {result['model_not_refreshed']}"))


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
    items_out: Annotated[
        Path | None, typer.Option("--items-out", help="Item table (Parquet; default <out>/../items.parquet).")
    ] = None,
) -> None:
    """Write a synthetic event log (Parquet, one file per day), its manifest and the item table."""
    from nightrec.ingest.synthetic import FaultSpec, SyntheticSpec, write_demo_data

    spec = SyntheticSpec(users=users, items=items, days=days, seed=seed)
    if end_date:
        spec = SyntheticSpec(users=users, items=items, days=days, seed=seed, end_date=date.fromisoformat(end_date))
    manifest = write_demo_data(out, spec, FaultSpec() if faults else None, items_out)
    console.print(
        f"wrote {manifest['rows']} events for {users} users, {items} items, {manifest['first_date']}.."
        f"{manifest['end_date']} to {out}" + (f" with faults {manifest['faults']}" if faults else "")
    )
    console.print(f"wrote the item table to {manifest['items_file']}")


def _published_readers(config: NightrecConfig):
    """``(where, user_list(user), fallback())`` over PostgreSQL when configured, else DuckDB."""
    from nightrec.publish.served import read_fallback, read_user_recommendations

    pub = config.publish
    if pub.postgres_url is None:
        return (
            str(config.duckdb_path),
            lambda user: read_user_recommendations(config.duckdb_path, user, config.run_date),
            lambda: read_fallback(config.duckdb_path, config.run_date),
        )
    from nightrec.publish.postgres import describe, read_fallback_pg, read_user_recommendations_pg

    schema = {"schema": pub.postgres_schema, "table": pub.postgres_table}
    return (
        f"PostgreSQL {describe(pub.postgres_url)} {pub.postgres_schema}.{pub.postgres_table}",
        lambda user: read_user_recommendations_pg(pub.postgres_url, user, config.run_date, **schema),
        lambda: read_fallback_pg(pub.postgres_url, config.run_date, **schema),
    )


def served_id(user_id: str, privacy: PrivacyConfig) -> str:
    """The id the published table knows a user by: their pseudonym unless external ids are published."""
    if not privacy.pseudonymize or privacy.publish_external_ids:
        return user_id
    from nightrec.privacy.pseudonyms import pseudonym, require_key

    return pseudonym(user_id, require_key(privacy, "recommend with privacy.pseudonymize"))


@app.command()
def recommend(
    user_id: Annotated[str | None, typer.Argument(help="External user id.")] = None,
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
    run_date: Annotated[
        str | None, typer.Option("--run-date", help="YYYY-MM-DD (default: the latest published run).")
    ] = None,
    day: Annotated[str | None, typer.Option("--date", hidden=True, help="Deprecated: --run-date.")] = None,
    sample: Annotated[int, typer.Option("--sample", min=0, help="Print the lists of the first N users instead.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Print one user's published list and its source (PostgreSQL when configured, else DuckDB).

    A user absent from the table is shown the run's new-user (popularity) list, with the
    published ids closest to the one typed, and the exit code is 1.
    """
    from flows.secrets import with_key_from_block
    from nightrec.publish.served import sample_users

    config = with_key_from_block(build_config(config_file, data_dir=data_dir, run_date=run_date or day))
    if sample:
        if config.publish.postgres_url is not None:
            raise NightrecError("--sample reads the DuckDB file; unset publish.postgres_url to use it")
        lists = [_user_list(config, user, served=user) for user in sample_users(config.duckdb_path, sample)]
    elif user_id is None:
        raise NightrecError("give a USER_ID or --sample N")
    else:
        lists = [_user_list(config, user_id, served=served_id(user_id, config.privacy))]
    if as_json:
        print_json([{**{k: v for k, v in entry.items() if k != "rows"}, "items": entry["rows"]} for entry in lists])
    else:
        for entry in lists:
            _print_list(entry)
    if not all(entry["known"] for entry in lists):
        raise typer.Exit(EXIT_UNKNOWN_USER)


def _user_list(config: NightrecConfig, user: str, served: str) -> dict:
    """One user's published rows, or the new-user list (with near ids) when the table lacks them."""
    import polars as pl

    from nightrec.schema import SOURCE_POPULARITY

    where, user_list, fallback = _published_readers(config)
    recs, similar = user_list(served), []
    known = not recs.is_empty()
    if not known:
        recs = fallback()
        if recs.is_empty():
            when = config.run_date.isoformat() if config.run_date else "the latest run"
            raise NightrecError(f"{where}: nothing published for {when}")
        recs = recs.with_columns(pl.lit(SOURCE_POPULARITY).alias("source"))
        if config.publish.postgres_url is None and served == user:  # pseudonyms have no near neighbours
            from nightrec.publish.served import similar_users

            similar = similar_users(config.duckdb_path, user, config.run_date)
    return {
        "user_id": user,
        "known": known,
        "similar_ids": similar,
        "run_date": recs["run_date"][0],
        "model_version": recs["model_version"][0],
        # when an intra-day refresh replaced the night's list (None: the night's own list)
        "refreshed_at": recs["refreshed_at"][0] if "refreshed_at" in recs.columns else None,
        "rows": recs.select("rank", "item_id", pl.col("score").round(4), "source").to_dicts(),
    }


def _print_list(entry: dict) -> None:
    from rich.table import Table

    user = entry["user_id"]
    if not entry["known"]:
        near = f"; did you mean {', '.join(entry['similar_ids'])}?" if entry["similar_ids"] else ""
        console.print(
            plain(f"user '{user}' is new (not in the published table{near}): showing the popularity fallback list"),
            soft_wrap=True,
            highlight=False,
        )
    sources = ", ".join(dict.fromkeys(row["source"] for row in entry["rows"]))
    when = entry.get("refreshed_at")
    refreshed = f" - refreshed {when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if when else ""
    console.print(
        plain(f"user {user} - run {entry['run_date']}{refreshed} - source: {sources} - model {entry['model_version']}"),
        soft_wrap=True,
        highlight=False,
    )
    table = Table(caption=SCORE_NOTE)
    for column in ("rank", "item_id", "score", "source"):
        table.add_column(column)
    for row in entry["rows"]:
        table.add_row(str(row["rank"]), plain(row["item_id"]), f"{row['score']:.4f}", plain(row["source"]))
    console.print(table)


# Further command modules register on `app` when imported; one import line each, kept sorted.
# (e.g. `import flows.cli_validate` with a noqa for E402 and F401)
import flows.cli_analyze  # noqa: E402
import flows.cli_orchestration  # noqa: E402
import flows.cli_privacy  # noqa: E402
import flows.cli_refresh  # noqa: E402
import flows.cli_sequences  # noqa: E402
import flows.cli_validate  # noqa: E402, F401


def _exit_on_sigterm(signum, frame) -> None:
    # SIGTERM ends the process without unwinding; as an exit it runs the cleanups (the trainer's
    # kill, Prefect's atexit stop of its ephemeral server) instead of leaving them running.
    sys.exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app()
    except NightrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if not is_setup_error(exc):
            raise
        # a permission, a path or a read-only mount the user can fix: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
