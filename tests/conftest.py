"""Shared fixtures: moto's server, a provisioned stack, and real worker processes.

The test process talks to the same moto server as the workers it starts: the
environment below is set before `tasks` is imported, so `task.delay()` here and
`celery -A tasks worker` in a subprocess agree on queue, table and endpoint.
Unit tests that use moto in process (`mock_aws`) use the `in_process_aws`
fixture, which points boto3 back at AWS's (mocked) endpoints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
RUN_ID = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOTO_PORT = int(os.environ.get("TEST_MOTO_PORT") or free_port())
ENDPOINT = f"http://127.0.0.1:{MOTO_PORT}"

STACK_ENV = {
    "JOBS_TARGET": "local",
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "JOBS_QUEUE_NAME": f"test-jobs-{RUN_ID}",
    "JOBS_DLQ_NAME": f"test-jobs-{RUN_ID}-dlq",
    "JOBS_TABLE_NAME": f"test-jobs-{RUN_ID}",
    "JOBS_VISIBILITY_TIMEOUT": "30",
    "JOBS_MAX_RECEIVE_COUNT": "3",
    # Short long-polls: workers notice shutdown quickly, and kombu's requeue
    # (which hides a message for wait_time_seconds) comes back fast.
    "JOBS_WAIT_TIME_SECONDS": "1",
    # Jobs only the tests use (crash, big_result, append_line...): never in production.
    "JOBS_EXTRA_MODULES": "tests.jobs",
}
os.environ.update(STACK_ENV)
os.environ.pop("AWS_ENDPOINT_URL_SQS", None)
os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)

# Load the Celery configuration now, with the stack's environment, so that a
# unit test that later swaps the environment (in_process_aws) cannot change it.
from tasks import app as celery_app  # noqa: E402

assert celery_app.conf.task_default_queue == STACK_ENV["JOBS_QUEUE_NAME"]


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.2,
    message: str = "condition",
) -> object:
    """Poll `predicate` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on loopback, for everything that runs in another process."""
    OUTPUT.mkdir(exist_ok=True)
    log = open(OUTPUT / f"moto-{MOTO_PORT}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        # moto's server, its DynamoDB writes made atomic as AWS's are (tests/atomic_moto_server.py).
        [sys.executable, "-m", "tests.atomic_moto_server", "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _port_open(MOTO_PORT), 30, message="moto server")
        yield ENDPOINT
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@dataclass
class Stack:
    endpoint: str
    env: dict[str, str]
    queue_url: str
    dlq_url: str
    table: str

    @property
    def sqs(self):
        from tasks.ops.clients import sqs_client
        from tasks.ops.settings import Settings

        return sqs_client(Settings.from_env())

    @property
    def dynamodb(self):
        from tasks.ops.clients import dynamodb_client
        from tasks.ops.settings import Settings

        return dynamodb_client(Settings.from_env())

    def item(self, job_id: str) -> dict | None:
        return self.dynamodb.get_item(
            TableName=self.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
        ).get("Item")

    def status(self, job_id: str) -> str | None:
        item = self.item(job_id)
        return item["status"]["S"] if item and "status" in item else None

    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def drain(self, url: str) -> int:
        """Delete every message in a queue (PurgeQueue is allowed once a minute only)."""
        deleted = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
            ).get("Messages", [])
            if not messages:
                return deleted
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            deleted += len(messages)

    def dlq_task_ids(self) -> list[str]:
        """Ids of the messages in the DLQ, read without consuming them."""
        from tasks.ops.dlq import peek

        return [m.task_id for m in peek(self.sqs, self.dlq_url) if m.task_id]


@pytest.fixture(scope="session")
def stack(moto_server: str) -> Stack:
    """The session's queue, dead-letter queue and table, made by tasks.ops.provision."""
    from tasks.ops.provision import provision
    from tasks.ops.settings import Settings

    queues, table = provision(Settings.from_env())
    env = {**os.environ, **STACK_ENV, "JOBS_QUEUE_URL": queues.queue_url}
    os.environ["JOBS_QUEUE_URL"] = queues.queue_url
    return Stack(moto_server, env, queues.queue_url, queues.dlq_url, table.name)


@dataclass
class Worker:
    proc: subprocess.Popen
    log_path: Path
    name: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def close(self, timeout: float = 30) -> None:
        """Warm shutdown, killed if it has not ended within `timeout` seconds."""
        self.stop(timeout=timeout)
        if self.alive():
            self.kill()


def launch_worker(
    stack: Stack,
    label: str,
    concurrency: int = 2,
    pool: str = "prefork",
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
) -> Worker:
    """Start `celery -A tasks worker` as a real process and wait until it is consuming."""
    name = f"{label}-{uuid.uuid4().hex[:6]}@test"
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / f"worker-{name}.log"
    heartbeat = OUTPUT / f"heartbeat-{name}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-l",
            "info",
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-n",
            name,
        ],
        cwd=ROOT,
        env={**stack.env, "WORKER_HEARTBEAT_FILE": str(heartbeat), **(env or {})},
        stdout=open(log_path, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = Worker(proc, log_path, name, env or {})
    try:
        wait_until(
            lambda: " ready." in worker.log() or not worker.alive(),
            ready_timeout,
            message=f"worker {name} ready",
        )
    except AssertionError:
        worker.kill()
        raise
    assert worker.alive(), f"worker {name} exited:\n{worker.log()[-3000:]}"
    return worker


@pytest.fixture
def start_worker(stack: Stack, request) -> Iterator[Callable[..., Worker]]:
    """Start real worker processes for one test; all are stopped after it."""
    workers: list[Worker] = []
    label = "".join(c for c in request.node.name if c.isalnum())[:40]

    def start(
        concurrency: int = 2,
        pool: str = "prefork",
        env: dict[str, str] | None = None,
        ready_timeout: float = 60,
    ) -> Worker:
        worker = launch_worker(
            stack, f"{label}{len(workers) + 1}", concurrency, pool, env, ready_timeout
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()


@pytest.fixture(scope="module")
def module_worker(stack: Stack, request) -> Iterator[Worker]:
    """One worker shared by the tests of a module (for tests that do not disturb it)."""
    worker = launch_worker(stack, request.module.__name__.rsplit(".", 1)[-1][:30], 2)
    yield worker
    worker.close()


@pytest.fixture
def in_process_aws(monkeypatch) -> Iterator[None]:
    """moto in process: no endpoint override, so botocore's calls reach the mock."""
    from moto import mock_aws

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JOBS_TARGET", "aws")
    from tasks.ops import clients as aws
    from tasks.ops.settings import Settings

    # What the app hands its backend and tasks (app.settings): AWS, here moto in process.
    monkeypatch.setattr(celery_app, "settings", Settings.from_env())
    aws._cached_client.cache_clear()
    with mock_aws():
        yield
    aws._cached_client.cache_clear()


@pytest.fixture
def records(in_process_aws):
    """The job-record state machine on moto in process, for unit tests of its transitions."""
    from tasks.ops.clients import dynamodb_client
    from tasks.ops.provision import ensure_table
    from tasks.ops.settings import Settings
    from tasks.results.records import JobRecords

    client = dynamodb_client(Settings.from_env())
    ensure_table(client, "jobs")
    return JobRecords(lambda: client, "jobs", 3600)
