"""infra/ is parsed, not built (no Docker daemon here): every entrypoint, command, flag, path
and name the files use must exist in the code and agree across the files."""

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect import Flow

from flows.pipeline import DEGRADED_EVENT
from nightrec.config import NightrecConfig, OrchestrationConfig

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
IMAGE = "nightrec-worker:latest"


@pytest.fixture(scope="module")
def prefect_yaml() -> dict:
    return yaml.safe_load((INFRA / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> dict:
    """Instruction -> list of arguments, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (INFRA / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            out.setdefault(instruction.upper(), []).append(rest.strip())
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def k8s() -> dict:
    return json.loads((INFRA / "k8s-base-job-template.json").read_text())


def _command(value) -> list[str]:
    return value if isinstance(value, list) else shlex.split(value)


def _prefect_commands(compose: dict, dockerfile: dict) -> list[list[str]]:
    """Every `prefect ...` invocation the files name."""
    commands = [json.loads(dockerfile["CMD"][0])]
    for service in compose["services"].values():
        cmd = _command(service.get("command", []))
        if cmd[:2] == ["sh", "-c"]:
            commands += [shlex.split(part) for part in cmd[2].split("&&")]
        elif cmd:
            commands.append(cmd)
    commands.append(["prefect", "flow-run", "execute"])  # what the Kubernetes job runs (the worker fills it in)
    return [c for c in commands if c[0] == "prefect"]


def test_prefect_yaml_entrypoints_are_the_flows_it_names(prefect_yaml):
    deployments = {d["name"]: d for d in prefect_yaml["deployments"]}
    assert set(deployments) == {"nightly", "retrain", "refresh"}
    for name, deployment in deployments.items():
        path, _, attr = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file(), path
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)
        assert isinstance(flow, Flow) and flow.name == name
        NightrecConfig.model_validate(deployment["parameters"]["config"])
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}

    (schedule,) = deployments["nightly"]["schedules"]
    defaults = OrchestrationConfig()
    assert (schedule["cron"], schedule["timezone"]) == (defaults.cron, defaults.timezone)
    assert not deployments["retrain"]["schedules"]
    (trigger,) = deployments["retrain"]["triggers"]
    assert trigger["expect"] == [DEGRADED_EVENT]
    assert trigger["parameters"] == {"reason": "{{ event.payload.reason }}"}
    (interval,) = deployments["refresh"]["schedules"]
    assert interval == {"interval": defaults.refresh_every_minutes * 60, "active": defaults.refresh_enabled}


def test_dockerfile_copies_what_exists_and_agrees_with_the_other_files(dockerfile, prefect_yaml, k8s):
    (workdir,) = dockerfile["WORKDIR"]
    (pull,) = prefect_yaml["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == workdir
    container = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["workingDir"] == workdir
    for copy in dockerfile["COPY"]:
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    packages = re.findall(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text())[0]
    for package in re.findall(r'"(\w+)\*"', packages):
        assert any(c.split()[0] == package for c in dockerfile["COPY"]), f"{package} is installed but not copied"
    assert any("--require-hashes" in run and "-r requirements.lock" in run for run in dockerfile["RUN"])
    assert any("pip install --no-deps ." in run for run in dockerfile["RUN"]), "the code installs without resolving"
    cmd = json.loads(dockerfile["CMD"][0])
    assert cmd[cmd.index("--pool") + 1] == prefect_yaml["deployments"][0]["work_pool"]["name"]


def test_compose_wires_server_postgres_deploy_and_worker(compose, prefect_yaml):
    services = compose["services"]
    assert {"postgres", "prefect-server", "deploy", "worker"} <= set(services)
    for name in ("prefect-server", "deploy", "worker"):
        build = services[name]["build"]
        assert (INFRA / build["context"] / build["dockerfile"]).resolve() == INFRA / "Dockerfile"
        assert services[name]["image"] == IMAGE
    db_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert db_url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in db_url
    importlib.import_module("asyncpg")  # the driver the URL names is installed
    port = _command(services["prefect-server"]["command"])[-1]
    for name in ("deploy", "worker"):
        assert services[name]["environment"]["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    deploy = services["deploy"]["command"][-1]
    assert "--prefect-file infra/prefect.yaml" in deploy and (ROOT / "infra/prefect.yaml").is_file()
    pool = prefect_yaml["deployments"][0]["work_pool"]["name"]
    assert f"work-pool create {pool}" in deploy
    assert services["worker"]["depends_on"]["deploy"]["condition"] == "service_completed_successfully"


def test_k8s_template_declares_every_variable_it_uses(k8s):
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(k8s["job_configuration"])))
    declared = set(k8s["variables"]["properties"])
    assert used <= declared, used - declared
    assert k8s["job_configuration"]["job_manifest"]["kind"] == "Job"
    assert k8s["variables"]["properties"]["image"]["default"] == IMAGE


def _prefect_help(tokens: list[str]) -> tuple[int, str]:
    """``prefect TOKENS --help`` through the installed CLI, as a user or a container runs it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PREFECT_CLI_WRAP_LINES": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *tokens, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.integration
def test_every_prefect_command_and_flag_the_files_name_exists(compose, dockerfile):
    commands = _prefect_commands(compose, dockerfile)
    assert len(commands) >= 5
    root_help = _prefect_help([])[1]
    for command in commands:
        args = command[1:]
        while args and args[0].startswith("--"):  # session flags before the subcommand
            assert args[0] in root_help, (command, args[0])
            args = args[1:]
        words = [a for a in args[:2] if not a.startswith("-")]
        code, text = _prefect_help(words[:2] if words[:1] != ["deploy"] else ["deploy"])
        assert code == 0, (command, text[-500:])
        for flag in (a for a in args if a.startswith("--")):
            assert flag in text, (command, flag)
    assert _prefect_help(["worker", "no-such-command"])[0] != 0, "the check can fail"


def test_make_ui_starts_the_local_server_module_on_localhost():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^ui:.*\n((?:\t.*\n?)+)", makefile, re.M).group(1)
    module = re.search(r"-m (\S+)", recipe).group(1)
    assert importlib.import_module(module).HOST == "127.0.0.1"
    assert "ui" in re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
