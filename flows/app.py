"""The Typer application and the options every command shares.

Commands live in modules named for what they do (``flows/cli.py`` holds the core ones); each
decorates its functions with ``@app.command`` and is imported by ``flows/cli.py``.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

import flows  # noqa: F401  (sets Prefect environment defaults before Prefect is imported)
from nightrec.config import NightrecConfig, load_config

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


def build_config(config_file: Path | None, **overrides) -> NightrecConfig:
    return load_config(config_file, overrides)


def plain(*parts: object) -> Text:
    """Data for the terminal as plain text: never Rich markup (an id like ``[/sale]`` or
    ``[link=...]`` is shown as typed) and with control characters, ANSI escapes included,
    shown escaped (``\\x1b``) rather than sent to the terminal."""
    text = "".join(str(part) for part in parts)
    return Text("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))
