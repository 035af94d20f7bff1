"""The Typer application and the options every command shares.

Commands live in modules named for what they do (``flows/cli.py`` holds the core ones); each
decorates its functions with ``@app.command`` and is imported by ``flows/cli.py``. Nothing here,
nor at the top of a command module, imports Polars, pydantic, Great Expectations, Prefect or
torch: ``nightrec --help`` stays fast, and each command imports what it uses when it runs.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

import flows  # noqa: F401  (sets Prefect environment defaults before Prefect is imported)
from nightrec.ingest.formats import FORMATS

if TYPE_CHECKING:
    from nightrec.config import NightrecConfig

app = typer.Typer(
    help="nightrec: nightly batch recommendations from user-behaviour events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML or TOML config file (or NIGHTREC_CONFIG).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (NIGHTREC_DATA_DIR).")]
RunDateOpt = Annotated[str | None, typer.Option("--run-date", help="YYYY-MM-DD (NIGHTREC_RUN_DATE).")]
EventsOpt = Annotated[str | None, typer.Option("--events", help="Events: file, folder or glob (NIGHTREC_EVENTS).")]
# The positional events path `validate` and `sequences` took before `--events`: still accepted, not shown.
EventsArg = Annotated[str | None, typer.Argument(hidden=True, show_default=False)]
FormatOpt = Annotated[str | None, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")]
ItemsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--items-file", help="Item attribute table: Parquet, CSV or RecBole .item (NIGHTREC_METADATA__ITEMS_FILE)."
    ),
]
UsersFileOpt = Annotated[
    Path | None,
    typer.Option("--users-file", help="User table: Parquet, CSV or RecBole .user (NIGHTREC_POPULARITY__USERS_FILE)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables (for scripts).")]


def _version() -> str:
    try:
        return version("nightrec")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"nightrec {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """nightrec: nightly batch recommendations from user-behaviour events."""


def build_config(
    config_file: Path | None, items_file: Path | None = None, users_file: Path | None = None, **overrides
) -> NightrecConfig:
    """The run config from a file, the environment and the flags (``None``: flag not given)."""
    from nightrec.config import load_config

    if items_file is not None:
        overrides["metadata"] = {"items_file": items_file}
    if users_file is not None:
        overrides["popularity"] = {"users_file": users_file}
    return load_config(config_file, overrides)


def events_path(option: str | None, positional: str | None) -> str | None:
    """``--events``, or the older positional spelling; both at once is ambiguous."""
    from nightrec.errors import ConfigError

    if option is not None and positional is not None and option != positional:
        raise ConfigError(f"two event paths given ({positional} and --events {option}): pass one --events PATH")
    return option if option is not None else positional


@contextmanager
def progress(message: str, quiet: bool = False):
    """A spinner on stderr while a step runs (none when stderr is not a terminal or with ``quiet``)."""
    if quiet or not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield


def print_json(document: object) -> None:
    """One JSON document on stdout: dates and paths as text."""
    sys.stdout.write(json.dumps(document, default=str, indent=2) + "\n")


def plain(*parts: object) -> Text:
    """Data for the terminal as plain text: never Rich markup (an id like ``[/sale]`` or
    ``[link=...]`` is shown as typed) and with control characters, ANSI escapes included,
    shown escaped (``\\x1b``) rather than sent to the terminal."""
    text = "".join(str(part) for part in parts)
    return Text("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))
