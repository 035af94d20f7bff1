"""Executable docs: the README's first lines, its config example, its CLI table and the commands it
shows on the demo's output stay true."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nightrec.config import NightrecConfig, TrainConfig, load_config

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
    assert config.k == 20 and config.model.family == "gru"


def test_from_one_machine_to_a_cluster_shows_three_levels_with_their_settings():
    section = TEXT.split("\n## From one machine to a cluster\n")[1].split("\n## ")[0]
    levels = re.split(r"^### \d\. .*$", section, flags=re.M)[1:]
    assert len(levels) == 3
    snippets = [[yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", level, flags=re.S)] for level in levels]
    assert all(snippets), "every level shows its settings"
    executors = [s["orchestration"]["executor"] for level in snippets for s in level if "orchestration" in s]
    assert executors[0] == "local" and set(executors[1:]) == {"dask"}
    (train,) = (s["train"] for s in snippets[2] if "train" in s)
    assert TrainConfig.model_validate(train).num_nodes > 1
    for path in re.findall(r"`(infra/[\w.-]+)`", section):
        assert (README.parent / path).is_file(), path


@pytest.mark.integration
def test_every_documented_command_exists():
    documented = set(re.findall(r"^\| `nightrec ([a-z-]+)", TEXT, flags=re.M))
    assert {"run", "demo-data", "recommend"} <= documented
    help_text = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, cwd=README.parent
    ).stdout
    for command in documented:
        assert f" {command} " in help_text, command


RUNNABLE = re.compile(r"^(\.venv/bin/)?(nightrec (validate|sequences|analyze|recommend)\b|\.venv/bin/python -c )")


def _demo_examples() -> list[str]:
    """Every README line that reads `make demo`'s output: the query, recommend, validate, sequences
    and analyze commands (blocks that export settings, e.g. a privacy key, set up another machine)."""
    lines = []
    for block in _blocks("bash"):
        if "export " not in block:
            lines += [line.strip() for line in block.splitlines() if RUNNABLE.match(line.strip())]
    return lines


def _expected_exit(line: str) -> int:
    return 1 if "exit 1" in line.split("#", 1)[-1] else 0


def test_readme_has_next_steps_and_no_link_outside_the_repository():
    assert "## Next steps" in TEXT and "make ui" in TEXT.split("## Next steps")[1].split("\n## ")[0]
    assert "../" not in TEXT
    # what make demo trains is the default model.family, named as such
    assert "a GRU" not in TEXT
    assert f"the default `model.family: {NightrecConfig().model.family}`" in " ".join(TEXT.split())
    assert not re.search(r"nightrec (validate|sequences) [^-\s]", TEXT), "events are given as --events PATH"


@pytest.mark.integration
@pytest.mark.slow
def test_readme_examples_run_against_the_demo_output(night_copy, demo_events, tmp_path):
    """The README's demo commands, as a user types them in the checkout after `make demo`."""
    examples = _demo_examples()
    assert {"validate", "analyze", "recommend"} <= {w for line in examples for w in line.split()}
    work = tmp_path / "checkout"
    (work / "bin").mkdir(parents=True)
    (work / "nightrec-data").symlink_to(night_copy.data_dir)
    (night_copy.data_dir / "events").symlink_to(demo_events[0])
    (work / ".venv").symlink_to(Path(sys.executable).parents[1])  # .venv/bin/python, .venv/bin/nightrec
    shim = work / "bin" / "nightrec"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m flows.cli "$@"\n')
    shim.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NIGHTREC_")},
        "PATH": f"{work / 'bin'}:{os.environ['PATH']}",
        "PYTHONPATH": str(README.parent),  # .venv/bin/nightrec runs this checkout's code
    }
    for line in examples:
        out = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == _expected_exit(line), f"{line}\n{out.stdout}\n{out.stderr}"
        assert "Traceback" not in out.stderr, line
        if "recommend u000042" in line and "--json" not in line:
            assert "user u000042 - run" in out.stdout, out.stdout
        if "--json" in line:
            assert json.loads(out.stdout)[0]["known"] is True
