"""The floor: the least a worker must do per job, written by hand with boto3.

Receive 10 messages per call (long polling), run the job, one UpdateItem per job (the
final state; a progress job also writes each step but the last, which the final write
carries), then one DeleteMessageBatch per batch. No Celery, no pool, no retries logic.

Run: python -m bench.floor  (settings from the same environment variables as the worker)
"""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime

import boto3
from botocore.config import Config

from bench.messages import decode

CONFIG = Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=4)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write(ddb, table: str, job_id: str, task: str, status: str, field: str, text: str) -> None:
    ddb.update_item(
        TableName=table,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET #s = :s, #t = :t, #f = :f, updated_at = :u",
        ExpressionAttributeNames={"#s": "status", "#t": "task", "#f": field},
        ExpressionAttributeValues={
            ":s": {"S": status},
            ":t": {"S": task},
            ":f": {"S": text},
            ":u": {"S": now()},
        },
    )


def run_job(ddb, table: str, task: str, job_id: str, kwargs: dict) -> None:
    if task.endswith(".sleep"):
        steps = int(kwargs.get("steps", 10))
        for step in range(1, steps):
            time.sleep(float(kwargs.get("seconds", 0)) / steps)
            write(
                ddb,
                table,
                job_id,
                task,
                "PROGRESS",
                "progress",
                json.dumps({"current": step, "total": steps}),
            )
        result = {"slept": kwargs.get("seconds", 0), "steps": steps}
    else:
        result = kwargs.get("x", 0) + kwargs.get("y", 0)
    write(ddb, table, job_id, task, "SUCCESS", "result", json.dumps(result))


def main() -> None:
    import os

    queue_url = os.environ["JOBS_QUEUE_URL"]
    table = os.environ["JOBS_TABLE_NAME"]
    wait = int(os.environ.get("JOBS_WAIT_TIME_SECONDS", "1"))
    session = boto3.session.Session()
    sqs = session.client("sqs", config=CONFIG)
    ddb = session.client("dynamodb", config=CONFIG)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("floor ready", flush=True)
    while not stopping:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        ).get("Messages", [])
        done = []
        for msg in messages:
            task, job_id, kwargs = decode(msg["Body"])
            run_job(ddb, table, task, job_id, kwargs)
            done.append({"Id": str(len(done)), "ReceiptHandle": msg["ReceiptHandle"]})
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)


if __name__ == "__main__":
    main()
