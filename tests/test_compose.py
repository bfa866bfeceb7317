"""The GPU image and the compose launcher, checked without a Docker engine (and with one)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "launch" / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
VARIABLE = re.compile(r"\$\{([A-Z_]+)(:-([^}]*))?\}")


def render(text: str, env: dict[str, str]) -> dict:
    """Compose's ``${NAME:-default}`` interpolation, then YAML."""
    def value(match):
        if match.group(2) is None:
            raise AssertionError(f"${{{match.group(1)}}} has no default")
        return env.get(match.group(1), match.group(3))

    return yaml.safe_load(VARIABLE.sub(value, text))


def trainer(env: dict[str, str] | None = None) -> dict:
    return render(COMPOSE.read_text(), env or {})["services"]["trainer"]


def test_every_variable_has_a_default_and_only_that_syntax_is_used():
    text = COMPOSE.read_text()
    assert "$" not in VARIABLE.sub("", text)
    assert all(m.group(2) is not None for m in VARIABLE.finditer(text))


def test_one_node_runs_torchrun_over_eight_gpus_with_a_rendezvous():
    service = trainer()
    assert service["entrypoint"] == ["torchrun"]
    command = service["command"]
    assert command[:5] == ["--nnodes=1", "--nproc_per_node=8", "--rdzv_backend=c10d",
                           "--rdzv_endpoint=127.0.0.1:29500", "--rdzv_id=spiral"]
    assert command[5:] == ["-m", "spiral.launch", "+exp=kuhn_paper", "out_dir=/runs/spiral"]


def test_two_nodes_share_node_zeros_endpoint_and_run_id():
    env = {"NNODES": "2", "MASTER_ADDR": "10.1.2.3", "RUN_ID": "paper1", "EXP": "kuhn"}
    command = trainer(env)["command"]
    assert "--nnodes=2" in command and "--rdzv_endpoint=10.1.2.3:29500" in command
    assert "--rdzv_id=paper1" in command and "out_dir=/runs/paper1" in command
    assert "+exp=kuhn" in command


def test_gpus_are_requested_with_the_compose_device_syntax():
    devices = trainer()["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_nccl_networking_shared_memory_and_volumes():
    service = trainer()
    assert service["network_mode"] == "host" and service["ipc"] == "host"
    assert service["ulimits"]["memlock"] == -1
    env = service["environment"]
    assert env["NCCL_SOCKET_IFNAME"] == "^lo,docker" and env["NCCL_IB_DISABLE"] == 0
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    mounts = dict(v.rsplit(":", 1)[::-1] for v in service["volumes"])
    assert mounts == {"/data": "hf-cache", "/runs": "../runs"}
    assert "hf-cache" in render(COMPOSE.read_text(), {})["volumes"]
    build = service["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_is_a_cuda_image_with_the_gpu_extra_run_by_a_user():
    steps = dockerfile_instructions()
    kinds = [k for k, _ in steps]
    assert steps[0][0] == "ARG" and "nvidia/cuda:12." in steps[0][1] and "devel" in steps[0][1]
    runs = " ".join(v for k, v in steps if k == "RUN")
    assert 'pip install "torch==2.13.0" && pip install ".[gpu]"' in runs
    users = [v for k, v in steps if k == "USER"]
    assert users and all(u not in ("root", "0") for u in users)
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert dict(steps)["ENTRYPOINT"] == '["python", "-m", "spiral.launch"]'
    env = " ".join(v for k, v in steps if k == "ENV")
    assert "HF_HOME=/data/hf" in env
    assert dict(steps)["VOLUME"] == '["/data", "/runs"]'


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker CLI without the compose plugin")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
