"""Job metrics as CloudWatch embedded metric format (EMF) records, one JSON line per job.

Each job the worker finishes writes one line to stdout. On ECS the awslogs log
driver ships stdout to CloudWatch Logs, which turns each record into metric
data points (no PutMetricData calls, no agent; CloudWatch bills the custom
metrics that result, one per metric name and dimension values seen).

Namespace: JOBS_METRICS_NAMESPACE (default `sqs-jobs`). One dimension set,
[Task, Outcome], so the metrics number (tasks x outcomes seen) x 4:

    JobDuration  Seconds  from a pool process starting the job (Celery's
                          time_start) to its message being acknowledged or handed back
    QueueWait    Seconds  from SQS accepting the message (its SentTimestamp) to
                          this receive; only when the receive asks for SentTimestamp
    Jobs         Count    1 per job: its Sum per Outcome counts successes and
                          failures per task
    Attempts     Count    the delivery this was (SQS's ApproximateReceiveCount):
                          above 1, a redelivery

`Task` is the job's registered name (unknown tasks never get this far), and
`Outcome` one of SUCCESS (the task returned), FAILURE (it raised, including an
attempt that asked Celery for a retry: the consumer is told only "not
successful"), REJECTED (its message was rejected to the dead-letter path) or
REQUEUED (handed back to the queue: a lost pool process, a shutdown). The
job's id is a property of the record (searchable with Logs Insights), never a
dimension.

On when JOBS_METRICS=on, off when JOBS_METRICS=off; unset, on only on ECS
(ECS_CONTAINER_METADATA_URI_V4 set), so local logs stay readable.

Written by hand to the EMF specification rather than with aws-embedded-metrics:
that library sends to a CloudWatch agent sidecar by default, writes its
"local" records with sys.stdout, which Celery redirects to its logger (each
record would become a prefixed log line, which CloudWatch does not parse), and
brings aiohttp for environment probes this worker does not need. Each line here
goes to file descriptor 1 in one write, so lines from concurrent writers never
interleave.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from typing import Any

from tasks.celery_private import delivery_count, request_message, succeeded
from tasks.ops.settings import Settings
from tasks.worker.middleware import Middleware

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "sqs-jobs"
UNITS = {"JobDuration": "Seconds", "QueueWait": "Seconds", "Jobs": "Count", "Attempts": "Count"}
OUTCOMES = {"reject": "REJECTED", "requeue": "REQUEUED"}
# Jobs received but not yet finished that we keep facts for (ETA jobs can wait long).
MAX_TRACKED = 10_000


def enabled(settings: Settings) -> bool:
    """JOBS_METRICS if set, else on ECS only (its agent sets the metadata URI)."""
    return settings.metrics if settings.metrics is not None else bool(settings.ecs_metadata_uri)


def sent_timestamp(message: Any) -> float | None:
    """When SQS accepted the message (epoch seconds), if the receive asked for it."""
    try:
        raw = message.delivery_info["sqs_message"]["Attributes"]["SentTimestamp"]
        return int(raw) / 1000
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def emf_record(
    namespace: str,
    dimensions: dict[str, str],
    values: dict[str, float],
    properties: dict[str, Any],
    timestamp: float,
) -> dict[str, Any]:
    """One EMF document: `_aws` metadata, dimension values, metric values, properties."""
    return {
        "_aws": {
            "Timestamp": int(timestamp * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in values],
                }
            ],
        },
        **properties,
        **dimensions,
        **values,
    }


def write_line(line: str) -> None:
    """To file descriptor 1 directly: sys.stdout is Celery's logging proxy in a worker."""
    data = (line + "\n").encode()
    while data:
        written = os.write(1, data)
        data = data[written:]


class JobMetrics(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.on = enabled(settings)
        self.namespace = settings.metrics_namespace
        self.queue_waits: OrderedDict[str, float] = OrderedDict()
        self.announced = False

    def consumer_started(self, consumer) -> None:
        if self.on and not self.announced:
            self.announced = True
            log.info("job metrics: one EMF record per job on stdout, namespace %s", self.namespace)

    def job_received(self, request) -> None:
        if not self.on:
            return
        sent = sent_timestamp(request_message(request))
        if sent is None:
            return  # the receive did not ask SQS for SentTimestamp
        self.queue_waits[request.id] = max(0.0, time.time() - sent)
        while len(self.queue_waits) > MAX_TRACKED:
            self.queue_waits.popitem(last=False)

    def job_finished(self, request, outcome: str) -> None:
        if not self.on:
            return
        wait = self.queue_waits.pop(request.id, None)
        label = OUTCOMES.get(outcome) or ("SUCCESS" if succeeded(request) else "FAILURE")
        now = time.time()
        values: dict[str, float] = {}
        started = getattr(request, "time_start", None)  # wall clock, set when a process took it
        if isinstance(started, float):
            values["JobDuration"] = round(max(0.0, now - started), 6)
        if wait is not None:
            values["QueueWait"] = round(wait, 3)
        values["Jobs"] = 1
        attempts = delivery_count(request)
        if attempts is not None:
            values["Attempts"] = attempts
        record = emf_record(
            self.namespace,
            {"Task": request.name, "Outcome": label},
            values,
            {"JobId": request.id},
            now,
        )
        try:
            write_line(json.dumps(record, separators=(",", ":")))
        except OSError as exc:  # stdout closed: metrics are not worth a job
            log.warning("job metrics off: cannot write to stdout (%s)", exc)
            self.on = False
