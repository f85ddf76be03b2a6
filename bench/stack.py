"""The emulated stack one benchmark run uses: fauxqs (SQS) + dynalite (DynamoDB).

`Stack.env(endpoint)` is the environment of a worker; pass the counting proxy's URL to
count its requests, or None to talk to the emulators directly.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3

ACCOUNT = "000000000000"  # fauxqs's account id
JOBS = {
    "noop": ("tasks.debug.add", {"x": 1, "y": 2}),
    "progress": ("tasks.debug.sleep", {"seconds": 0, "steps": 5}),
}


@dataclass
class Stack:
    WAIT_TIME_SECONDS = 2  # workers' long poll: short, so they stop quickly

    sqs_endpoint: str
    ddb_endpoint: str
    log_dir: Path
    run_id: str = ""
    account: str = ACCOUNT
    poll_cost: float = 0.0  # fauxqs CPU seconds per depth() call (scenarios.poll_cost)
    # Run in each worker process before it starts: bench.placement's pinning, if any.
    worker_preexec: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.run_id = self.run_id or uuid.uuid4().hex[:6]
        self.queue_name = f"bench-{self.run_id}"
        self.table = f"bench-{self.run_id}"
        self.stock_table = f"bench-stock-{self.run_id}"
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.sqs = session.client("sqs", endpoint_url=self.sqs_endpoint)
        self.depth_calls = 0  # GetQueueAttributes made by depth(): bench.scenarios nets them out
        self.ddb = session.client("dynamodb", endpoint_url=self.ddb_endpoint)

    def queue_url(self, endpoint: str | None = None) -> str:
        return f"{endpoint or self.sqs_endpoint}/{self.account}/{self.queue_name}"

    def env(self, proxy: str | None = None, tag: str = "") -> dict[str, str]:
        return {
            "JOBS_TARGET": "local",
            "AWS_ENDPOINT_URL": proxy or self.sqs_endpoint,
            "AWS_ENDPOINT_URL_SQS": proxy or self.sqs_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": proxy or self.ddb_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "JOBS_QUEUE_NAME": self.queue_name,
            "JOBS_QUEUE_URL": self.queue_url(proxy),
            "JOBS_DLQ_NAME": f"{self.queue_name}-dlq",
            "JOBS_TABLE_NAME": self.table,
            "BENCH_STOCK_TABLE": self.stock_table,
            "JOBS_VISIBILITY_TIMEOUT": "300",
            "JOBS_WAIT_TIME_SECONDS": str(self.WAIT_TIME_SECONDS),
            "WORKER_CONCURRENCY": "2",
            "WORKER_HEARTBEAT_FILE": str(self.log_dir / f"heartbeat-{tag or 'x'}"),
        }

    def provision(self, set_environ: bool = True) -> None:
        """Queue, DLQ and our table with the project's own code; stock makes its table."""
        if set_environ:
            os.environ.update(self.env())
        from tasks.ops.provision import ensure_queues, ensure_table

        ensure_queues(
            self.sqs,
            self.queue_name,
            f"{self.queue_name}-dlq",
            visibility_timeout=300,
            max_receive_count=5,
        )
        ensure_table(self.ddb, self.table)

    def depth(self) -> int:
        self.depth_calls += 1
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def wait_drained(self, alive, timeout: float, interval: float = 0.05) -> float:
        """Wait until every message is deleted; returns the time it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth() == 0:
                return time.monotonic()
            if not alive():
                raise RuntimeError("a worker exited; see the logs in " + str(self.log_dir))
            time.sleep(interval)
        raise TimeoutError(f"queue not drained within {timeout}s (depth {self.depth()})")

    def item(self, kind: str, job_id: str) -> dict | None:
        if kind != "stock":
            return self.ddb.get_item(
                TableName=self.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
            ).get("Item")
        # Celery 5.7's DynamoDB backend stores str() of its bytes key: "b'celery-task-...'".
        for key in (f"b'celery-task-meta-{job_id}'", f"celery-task-meta-{job_id}"):
            try:
                item = self.ddb.get_item(
                    TableName=self.stock_table, Key={"id": {"S": key}}, ConsistentRead=True
                ).get("Item")
            except self.ddb.exceptions.ResourceNotFoundException:
                return None  # the stock worker creates its table when it starts
            if item:
                return item
        return None

    def status(self, kind: str, job_id: str) -> str | None:
        item = self.item(kind, job_id)
        if not item:
            return None
        if kind == "stock":
            raw = item["result"].get("B") or item["result"].get("S")
            return json.loads(raw)["status"]
        return item.get("status", {}).get("S")


def attribute_size(value: dict) -> int:
    """Bytes DynamoDB bills for one attribute value (close approximation)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "B":
        return len(data)
    if kind == "N":
        return len(data.lstrip("-").replace(".", "")) // 2 + 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) for k, v in data.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) for v in data)
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v)) for v in data)
    return 1


def item_size(item: dict) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())
