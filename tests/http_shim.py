"""gunicorn serving the shim as a real process, and a small HTTP client for tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import OUTPUT, ROOT, free_port, wait_until

TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


@dataclass
class Answer:
    status: int
    body: object
    headers: dict[str, str]


def http(
    method: str,
    url: str,
    body: bytes | str | dict | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Answer:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    if isinstance(data, str):
        data = data.encode()
    sent = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(
        url, data=data, method=method, headers={**sent, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        parsed: object = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Answer(status, parsed, got)


@dataclass
class Shim:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def submit(self, task: str, kwargs: dict, **kw) -> str:
        answer = http("POST", f"{self.url}/tasks/{task}", kwargs, **kw)
        assert answer.status == 202, answer.body
        return answer.body["job_id"]

    def job(self, job_id: str, **kw) -> dict:
        answer = http("GET", f"{self.url}/jobs/{job_id}", **kw)
        assert answer.status == 200, answer.body
        return answer.body

    def wait(self, job_id: str, timeout: float = 60) -> dict:
        return wait_until(
            lambda: (lambda j: j if j["status"] in TERMINAL else None)(self.job(job_id)),
            timeout,
            message=f"job {job_id} to finish",
        )


def launch_shim(env: dict[str, str], label: str) -> Shim:
    """gunicorn serving the shim on a free loopback port, as `make run` does."""
    port = free_port()
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / f"shim-{label}-{port}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:api_shim.gunicorn_conf",
            "-b",
            f"127.0.0.1:{port}",
            "api_shim.app:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    shim = Shim(f"http://127.0.0.1:{port}", proc, log_path)

    def ready() -> bool:
        assert proc.poll() is None, f"gunicorn exited:\n{log_path.read_text()[-3000:]}"
        try:
            return http("GET", f"{shim.url}/healthz", timeout=2).status == 200
        except OSError:
            return False

    wait_until(ready, 60, message="gunicorn serving the shim")
    return shim


@contextlib.contextmanager
def running_shim(env: dict[str, str], label: str) -> Iterator[Shim]:
    """launch_shim for the length of a `with` block (a module fixture's usual body)."""
    shim = launch_shim(env, label)
    try:
        yield shim
    finally:
        stop_shim(shim)


def stop_shim(shim: Shim) -> None:
    shim.proc.terminate()
    try:
        shim.proc.wait(15)
    except subprocess.TimeoutExpired:
        shim.proc.kill()
        shim.proc.wait(5)
