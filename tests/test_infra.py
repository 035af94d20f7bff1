"""infra/ is parsed, not built (no Docker daemon here): every entrypoint, command, flag, path
and name the files use must exist in the code and agree across the files."""

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from prefect import Flow

from flows.pipeline import DEGRADED_EVENT
from lightning_modules.launch import node_strategy
from lightning_modules.train import load_run_config
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


@pytest.fixture(scope="module")
def train_job() -> dict:
    """infra/k8s-train-job.yaml's documents by kind."""
    return {doc["kind"]: doc for doc in yaml.safe_load_all((INFRA / "k8s-train-job.yaml").read_text())}


def _trainer_container(train_job: dict) -> dict:
    (container,) = train_job["Job"]["spec"]["template"]["spec"]["containers"]
    return container


def _split_at_module(args: list[str]) -> tuple[list[str], list[str]]:
    """torchrun's own arguments, and the trained module's (``... -m MODULE ARGS``)."""
    at = args.index("-m")
    assert args[at + 1] == "lightning_modules.train"
    return args[:at], args[at + 2 :]


def _options(args: list[str]) -> dict[str, str]:
    return {flag: value for flag, value in zip(args, [*args[1:], ""], strict=True) if flag.startswith("--")}


def _has_flag(help_text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


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


def test_k8s_train_job_runs_torchrun_on_every_indexed_pod(train_job, k8s, dockerfile, tmp_path):
    assert set(train_job) == {"Service", "ConfigMap", "Job"}
    job, service = train_job["Job"]["spec"], train_job["Service"]
    pod, container = job["template"], _trainer_container(train_job)
    assert container["image"] == IMAGE and container["workingDir"] == dockerfile["WORKDIR"][0]
    assert container["command"] == ["torchrun"]
    torchrun, trainer = (_options(part) for part in _split_at_module(container["args"]))

    # one pod per machine; pod N is node N; pod 0, the master, by name through the headless Service
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"] > 1
    assert int(torchrun["--nnodes"]) == job["completions"]
    assert torchrun["--node-rank"] == "$(JOB_COMPLETION_INDEX)"
    env = {e["name"]: e for e in container["env"]}
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == index
    assert set(re.findall(r"\$\((\w+)\)", " ".join(container["args"]))) <= set(env)
    assert service["spec"]["clusterIP"] == "None" and pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert torchrun["--master-addr"] == f"{train_job['Job']['metadata']['name']}-0.{pod['spec']['subdomain']}"
    assert int(torchrun["--master-port"]) in {p["port"] for p in service["spec"]["ports"]}

    # the trainer's --config is the ConfigMap, read as the trainer reads it, and agrees with torchrun
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (config_volume,) = (
        n
        for n, v in volumes.items()
        if v.get("configMap", {}).get("name") == train_job["ConfigMap"]["metadata"]["name"]
    )
    folder, _, key = trainer["--config"].rpartition("/")
    assert mounts[config_volume] == folder
    (tmp_path / key).write_text(train_job["ConfigMap"]["data"][key])
    train = load_run_config(tmp_path / key).train
    assert train.num_nodes == job["completions"] and train.devices == int(torchrun["--nproc-per-node"])
    assert node_strategy(train, {"TORCHELASTIC_RUN_ID": "job"}) == "ddp"

    # the sequences and the model folder are on the work pool's data claim
    claim = k8s["variables"]["properties"]["data_claim"]["default"]
    assert volumes["nightrec-data"]["persistentVolumeClaim"]["claimName"] == claim
    assert all(trainer[flag].startswith(mounts["nightrec-data"] + "/") for flag in ("--sequences", "--out"))


def test_compose_runs_a_dask_cluster_the_flow_uses(compose):
    services = compose["services"]
    scheduler, dask_worker, flow = services["dask-scheduler"], services["dask-worker"], services["worker"]
    for service in (scheduler, dask_worker):
        assert service["image"] == IMAGE and _command(service["command"])[0] == "dask"
    port = _options(_command(scheduler["command"]))["--port"]
    address = f"tcp://dask-scheduler:{port}"
    assert _command(dask_worker["command"])[:3] == ["dask", "worker", address]
    settings = flow["environment"]
    assert settings["NIGHTREC_ORCHESTRATION__EXECUTOR"] == "dask"
    assert settings["NIGHTREC_ORCHESTRATION__DASK_ADDRESS"] == address
    assert int(settings["NIGHTREC_ORCHESTRATION__SHARDS"]) > 1
    # Dask workers read and write the night's files by path: the flow's volume, at the flow's path
    assert "nightrec-data:/data" in dask_worker["volumes"] and "nightrec-data:/data" in flow["volumes"]


def _help(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, (command, done.stderr[-500:])
    return done.stdout


@pytest.mark.integration
def test_every_torchrun_and_trainer_flag_of_the_train_job_exists(train_job):
    container = _trainer_container(train_job)
    assert entry_points(group="console_scripts", name=container["command"][0]), "torchrun is installed"
    torchrun, trainer = _split_at_module(container["args"])
    torchrun_help = _help(sys.executable, "-m", "torch.distributed.run")
    trainer_help = _help(sys.executable, "-m", "lightning_modules.train")
    for flags, help_text in ((torchrun, torchrun_help), (trainer, trainer_help)):
        assert _options(flags) and all(_has_flag(help_text, flag) for flag in _options(flags)), flags
    assert not _has_flag(torchrun_help, "--nodes") and not _has_flag(trainer_help, "--num-nodes"), "the check can fail"


@pytest.mark.integration
def test_every_dask_command_and_flag_of_compose_exists(compose):
    commands = [
        _command(s["command"]) for s in compose["services"].values() if "dask" in _command(s.get("command", []))[:1]
    ]
    assert [c[1] for c in commands] == ["scheduler", "worker"]
    assert entry_points(group="console_scripts", name="dask"), "the dask command is installed"
    for command in commands:
        help_text = _help(sys.executable, "-m", *command[:2])
        for flag in (a for a in command if a.startswith("--")):
            assert _has_flag(help_text, flag), (command, flag)
        assert not _has_flag(help_text, "--workers"), "the check can fail"
