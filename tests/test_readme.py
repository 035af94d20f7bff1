"""Executable docs: the README's first lines, its config example and its CLI table stay true."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nightrec.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, flags=re.S)


def test_first_lines_are_the_two_commands():
    commands = [line.split("#")[0].strip() for line in _blocks("bash")[0].strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert TEXT.index("make demo") < 200


def test_makefile_targets_and_ci_use_them():
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (README.parent / ".ci" / "run").read_text()


def test_config_example_is_valid(tmp_path):
    (tmp_path / "c.yaml").write_text(_blocks("yaml")[0])
    config = load_config(tmp_path / "c.yaml", environ={})
    assert config.k == 20 and config.model.cell == "gru"


@pytest.mark.integration
def test_every_documented_command_exists():
    documented = set(re.findall(r"^\| `nightrec ([a-z-]+)", TEXT, flags=re.M))
    assert {"run", "demo-data", "recommend"} <= documented
    help_text = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, cwd=README.parent
    ).stdout
    for command in documented:
        assert f" {command} " in help_text, command
