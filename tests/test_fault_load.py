"""Load: 10,000 jobs over HTTP through gunicorn, drained by several worker processes.

Concurrent clients (threads, keep-alive connections, loopback only) POST
/tasks/tasks.debug.add to the shim; three `celery -A tasks worker` processes drain the queue
while it fills. Every job must end as exactly one SUCCESS record with the right result, after
one attempt, with the queue and the dead-letter queue empty.

SQS is fauxqs (tests/fast_sqs.py): moto's SQS slows by about 1 ms per queued message on
every receive. DynamoDB is dynalite (tests/fast_dynamodb.py): moto's server spends about
9 ms of CPU per conditional write, which caps the pipeline near 40 jobs/s here.
LOAD_TEST_JOBS overrides the job count (default 10,000). Throughput goes to the test's
output and to test-output/load-test.json.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import gunicorn
import pytest

from tests.conftest import OUTPUT, ROOT, Stack, free_port, launch_worker, wait_until
from tests.fast_dynamodb import fast_dynamodb
from tests.fast_sqs import fast_sqs

pytestmark = [pytest.mark.integration, pytest.mark.fault]

JOBS = int(os.environ.get("LOAD_TEST_JOBS") or 10_000)
CLIENTS = 16  # concurrent HTTP clients, one keep-alive connection each
WORKER_PROCESSES = 3
WORKER_CONCURRENCY = 2
SUBMIT_SECONDS = 120  # the whole submission must fit in this
DRAIN_SECONDS = 120  # and the queue must be empty this long after submission ended
TASK = "tasks.debug.add"


@dataclass
class LoadStack:
    env: dict[str, str]
    queue_url: str
    dlq_url: str
    table: str
    sqs: object
    dynamodb: object

    def queue_counts(self, url: str) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"])
            + int(attrs["ApproximateNumberOfMessagesDelayed"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def count_items(self) -> int:
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=self.table, Select="COUNT", ConsistentRead=True
        )
        return sum(page["Count"] for page in pages)

    def items(self, job_ids: list[str]) -> dict[str, dict]:
        """Every record by job id: BatchGetItem with consistent reads, 100 keys a call."""
        found: dict[str, dict] = {}
        for start in range(0, len(job_ids), 100):
            keys = [{"job_id": {"S": j}} for j in job_ids[start : start + 100]]
            request = {self.table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    found[item["job_id"]["S"]] = item
                request = answer.get("UnprocessedKeys") or None
        return found


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _serve(args: list[str], env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen:
    """A server process on loopback; returns once its port accepts connections."""
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )

    def listening() -> bool:
        assert proc.poll() is None, f"{args[:3]} exited:\n{log_path.read_text()[-3000:]}"
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, 60, message=f"{args[:3]} listening on {port}")
    except BaseException:
        _stop(proc)
        raise
    return proc


@pytest.fixture
def dynamodb_server() -> Iterator[str]:
    """DynamoDB for the load: dynalite (see tests/fast_dynamodb.py for why not moto)."""
    with fast_dynamodb(OUTPUT) as endpoint:
        yield endpoint


@pytest.fixture
def load_stack(dynamodb_server: str, moto_server: str) -> Iterator[LoadStack]:
    from tasks.ops.clients import dynamodb_client, sqs_client
    from tasks.ops.provision import provision
    from tasks.ops.settings import Settings

    OUTPUT.mkdir(exist_ok=True)
    with fast_sqs(OUTPUT) as sqs_endpoint:
        name = f"load-{uuid.uuid4().hex[:8]}"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "JOBS_"))
        }
        env.update(
            {
                "JOBS_TARGET": "local",
                "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server,
                "AWS_ENDPOINT_URL_S3": moto_server,  # the large-payload bucket: no load on it
                "AWS_ENDPOINT_URL_SCHEDULER": moto_server,  # deferred jobs: none here
                "JOBS_QUEUE_NAME": name,
                "JOBS_DLQ_NAME": f"{name}-dlq",
                "JOBS_TABLE_NAME": name,
                "JOBS_VISIBILITY_TIMEOUT": "120",
                "JOBS_MAX_RECEIVE_COUNT": "3",
                "JOBS_WAIT_TIME_SECONDS": "1",
                "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            }
        )
        with mock.patch.dict(os.environ, env, clear=True):
            settings = Settings.from_env()
            queues, table = provision(settings)
        env["JOBS_QUEUE_URL"] = queues.queue_url
        yield LoadStack(
            env,
            queues.queue_url,
            queues.dlq_url,
            table.name,
            sqs_client(settings),
            dynamodb_client(settings),
        )


@pytest.fixture
def shim_url(load_stack: LoadStack) -> Iterator[str]:
    """gunicorn serving the shim; threaded workers keep client connections alive."""
    port = free_port()
    control = ["--no-control-socket"] if gunicorn.version_info >= (27,) else []
    proc = _serve(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "api_shim.app:create_app()",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "-k",
            "gthread",
            "--threads",
            "8",
            "--keep-alive",
            "30",
            *control,
        ],
        load_stack.env,
        OUTPUT / f"load-shim-{port}.log",
        port,
    )
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def submit_all(
    url: str, count: int, clients: int, deadline: float
) -> tuple[dict[str, int], list[str]]:
    """POST `count` jobs from `clients` threads; returns ({job id: n}, problems)."""
    target = urlsplit(url)
    jobs: dict[str, int] = {}
    problems: list[str] = []
    lock = threading.Lock()

    def client(first: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            for n in range(first, count, clients):
                if time.monotonic() > deadline:
                    with lock:
                        problems.append(f"client {first}: submission deadline passed at job {n}")
                    return
                conn.request(
                    "POST",
                    f"/tasks/{TASK}",
                    json.dumps({"x": n, "y": 0.5}),
                    {"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                raw = response.read()
                with lock:
                    if response.status == 202:
                        jobs[json.loads(raw)["job_id"]] = n
                    else:
                        problems.append(f"job {n}: {response.status} {raw[:200]!r}")
        finally:
            conn.close()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return jobs, problems


def outcome(item: dict) -> tuple:
    """(status, decoded result, attempts) of a job record."""
    result = item.get("result", {}).get("S")
    return (
        item.get("status", {}).get("S"),
        result and json.loads(result),
        item.get("attempts", {}).get("N"),
    )


def test_ten_thousand_jobs_over_http(load_stack: LoadStack, shim_url: str):
    # launch_worker needs only the env; the other fields describe the same stack.
    stack = Stack(
        load_stack.env["AWS_ENDPOINT_URL_SQS"],
        load_stack.env,
        load_stack.queue_url,
        load_stack.dlq_url,
        load_stack.table,
    )
    workers = [
        launch_worker(stack, f"load{n}", WORKER_CONCURRENCY) for n in range(WORKER_PROCESSES)
    ]
    try:
        started = time.monotonic()
        jobs, problems = submit_all(shim_url, JOBS, CLIENTS, started + SUBMIT_SECONDS)
        submitted = time.monotonic()
        assert not problems, f"{len(problems)} submissions failed: {problems[:5]}"
        assert len(jobs) == JOBS, "job ids must be unique"

        wait_until(
            lambda: load_stack.queue_counts(load_stack.queue_url) == (0, 0),
            DRAIN_SECONDS,
            interval=0.5,
            message="the queue to drain",
        )
        drained = time.monotonic()
        assert all(w.alive() for w in workers), "a worker died under load"
    finally:
        for worker in workers:
            worker.close()

    items = load_stack.items(list(jobs))
    missing = [j for j in jobs if j not in items]
    assert not missing, f"{len(missing)} jobs have no record, e.g. {missing[:3]}"
    wrong = {
        j: outcome(i) for j, i in items.items() if outcome(i) != ("SUCCESS", jobs[j] + 0.5, "1")
    }
    assert not wrong, f"{len(wrong)} records are not one clean SUCCESS: {list(wrong.items())[:5]}"
    assert load_stack.count_items() == JOBS, "the table holds a record nobody submitted"
    assert load_stack.queue_counts(load_stack.queue_url) == (0, 0)
    assert load_stack.queue_counts(load_stack.dlq_url) == (0, 0)
    logs = [w.log() for w in workers]
    # The table refuses a second terminal write and the backend logs it: there must be none.
    assert not any("already finished" in log for log in logs)
    per_worker = [log.count("succeeded in") for log in logs]
    assert sum(per_worker) == JOBS and all(per_worker), per_worker

    summary = {
        "jobs": JOBS,
        "clients": CLIENTS,
        "worker_processes": WORKER_PROCESSES,
        "worker_concurrency": WORKER_CONCURRENCY,
        "submit_seconds": round(submitted - started, 1),
        "submit_per_second": round(JOBS / (submitted - started)),
        "drain_seconds_after_submit": round(drained - submitted, 1),
        "end_to_end_per_second": round(JOBS / (drained - started)),
        "jobs_per_worker": per_worker,
    }
    (OUTPUT / "load-test.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"load test: {summary}")
