"""The baseline: stock Celery on the same SQS queue, with Celery's own `dynamodb://` backend.

Same delivery settings as ours (acks late, prefetch 1, JSON only, no remote control or
events, polling_interval 0), so what differs is Celery's consumer and result backend.
The same task names as ours are registered, doing the same work.

Run: celery -A bench.stock_app worker  (environment as for `celery -A tasks worker`, plus
BENCH_STOCK_TABLE; the backend creates its table on first start, at the endpoint in
AWS_ENDPOINT_URL_DYNAMODB: dynalite in the benchmarks, as for ours)
"""

from __future__ import annotations

import os
import time

from celery import Celery

region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
queue_name = os.environ["JOBS_QUEUE_NAME"]
table = os.environ.get("BENCH_STOCK_TABLE", "celery-stock")

app = Celery("stock")
app.conf.update(
    broker_url="sqs://",
    broker_transport_options={
        "region": region,
        "predefined_queues": {queue_name: {"url": os.environ["JOBS_QUEUE_URL"]}},
        "visibility_timeout": 300,
        "polling_interval": 0,
        "wait_time_seconds": int(os.environ.get("JOBS_WAIT_TIME_SECONDS", "10")),
    },
    broker_connection_retry_on_startup=True,
    task_default_queue=queue_name,
    task_create_missing_queues=False,
    result_backend=f"dynamodb://@{region}/{table}?read=5&write=5&ttl_seconds=604800",
    dynamodb_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    or os.environ.get("AWS_ENDPOINT_URL"),
    result_extended=True,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
)


@app.task(name="tasks.debug.add", bind=True)
def add(self, x: float, y: float) -> float:
    return x + y


@app.task(name="tasks.debug.sleep", bind=True)
def sleep(self, seconds: float, steps: int = 10) -> dict:
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        self.update_state(
            state="PROGRESS", meta={"current": step, "total": steps, "message": f"step {step}"}
        )
    return {"slept": seconds, "steps": steps}
