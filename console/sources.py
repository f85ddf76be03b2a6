"""What the console reads and does, from the emulator (LocalSource) or a stack (AwsSource).

Both read the same things the same way: queue attributes (GetQueueAttributes), the job
records through tasks.results (list_jobs, JobRecords.read, the revoke transition), the
dead-letter queue through tasks.ops.dlq. AwsSource adds what only AWS has: the ECS service,
the stack's CloudWatch alarms and SQS's ApproximateAgeOfOldestMessage metric.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from celery import states

from tasks.http_contract.record import record_json
from tasks.ops import dlq
from tasks.ops.queue_metrics import oldest_message_age
from tasks.ops.settings import Settings
from tasks.results import listing
from tasks.results.control import ScheduleCancel, cancel_schedule, signal_name
from tasks.results.encoding import iso_utc, item_str
from tasks.results.listing import JobPage, list_jobs
from tasks.results.records import JobRecords
from tasks.results.revoke import Revocation
from tasks.results.transitions import SCHEDULED

JOB_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
FINISHED = (states.SUCCESS, states.FAILURE, states.REVOKED)
# A chart's range: its length, and the width of one bar or point.
RANGES = {
    "hour": (timedelta(hours=1), timedelta(minutes=1)),
    "day": (timedelta(days=1), timedelta(minutes=15)),
}
# Task and outcome series on the durations chart (the busiest first, by jobs seen).
DURATION_SERIES = 12
# Queue depth samples kept in this process for the local chart (one per /api/now poll).
DEPTH_SAMPLES = 2000
# Dead-letter receives when looking for one message (10 a receive).
FIND_ROUNDS = 50
# The chart reads at most this many finished jobs per status (pages of 100): past it the
# chart says it is capped rather than read the whole table on every poll.
CHART_CAP = 1000
# Failures in the last hour counted on the Now view (one page of the listing).
FAILURE_CAP = 100
# A dead letter's envelope headers shown (Celery's message protocol 2): what it is, never
# what it carries (argsrepr and kwargsrepr may hold personal data).
LETTER_HEADERS = ("task", "id", "retries", "eta", "expires", "root_id", "parent_id", "group")
QUEUE_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


@dataclass(frozen=True)
class Names:
    """The resources one source reads: queue, DLQ and table; on AWS, service and alarms."""

    queue: str
    dlq: str
    table: str
    cluster: str | None = None
    service: str | None = None
    alarms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cancellation:
    """What a cancel did: the revoke, and what became of a SCHEDULED job's schedule."""

    revocation: Revocation
    schedule: ScheduleCancel | None = None  # what became of its one-time schedule, if any

    def __str__(self) -> str:
        outcome = self.revocation
        said = str(outcome)
        if outcome.revoked and outcome.terminate:
            said += f"; its worker sends it {outcome.terminate}"
        return said + (f"; {self.schedule}" if self.schedule else "")


@dataclass
class Source:
    """The queue, DLQ and records of one system; `kind` is "local" or "aws"."""

    names: Names
    sqs: Callable[[], Any]  # callables: a boto3 client must not cross gunicorn's fork
    dynamodb: Callable[[], Any]
    result_expires: int | None = None
    kind: str = "local"
    # Where deferred jobs' one-time schedules are (settings.schedule_group) and the
    # EventBridge Scheduler client that deletes one when its job is cancelled.
    settings: Settings | None = None
    scheduler: Callable[[], Any] | None = None
    _urls: dict[str, str] = field(default_factory=dict, repr=False)
    _depths: deque[tuple[datetime, int]] = field(
        default_factory=lambda: deque(maxlen=DEPTH_SAMPLES), repr=False
    )

    # --- resources -------------------------------------------------------------------
    def url(self, name: str) -> str:
        if name not in self._urls:
            self._urls[name] = self.sqs().get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[name]

    def records(self) -> JobRecords:
        return JobRecords(self.dynamodb, self.names.table, self.result_expires)

    def queue_counts(self, name: str) -> dict[str, int]:
        attrs = self.sqs().get_queue_attributes(
            QueueUrl=self.url(name), AttributeNames=QUEUE_ATTRIBUTES
        )["Attributes"]
        return {
            "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        }

    # --- views -----------------------------------------------------------------------
    def now(self, when: datetime | None = None) -> dict[str, Any]:
        """The Now view: queue, DLQ, failures of the last hour; `attention` says what is red."""
        when = when or datetime.now(UTC)
        queue = self.queue_counts(self.names.queue)
        self._depths.append((when, queue["visible"]))
        dead = self.queue_counts(self.names.dlq)
        dlq_depth = dead["visible"] + dead["in_flight"] + dead["delayed"]
        failed = list_jobs(
            states.FAILURE,
            since=iso_utc(when - timedelta(hours=1)),
            limit=FAILURE_CAP,
            client=self.dynamodb(),
            table=self.names.table,
        )
        attention = []
        if dlq_depth:
            attention.append(f"{dlq_depth} message(s) in the dead-letter queue")
        if failed.jobs:
            attention.append(f"{len(failed.jobs)} failed job(s) in the last hour")
        return {
            "kind": self.kind,
            "at": iso_utc(when),
            "queue": queue,
            "oldest_age": self.oldest_age(when),
            "dlq": dlq_depth,
            "failures_last_hour": len(failed.jobs),
            "failures_capped": failed.next is not None,
            "service": None,
            "alarms": [],
            "attention": attention,
        }

    def oldest_age(self, when: datetime) -> int | None:
        """Seconds of the oldest message; None where nothing measures it (the emulator has
        no CloudWatch metrics, and a queued message has no record yet)."""
        return None

    def chart(self, when: datetime | None = None, span: str = "hour") -> dict[str, Any]:
        """Jobs finished per bar (a minute over an hour, 15 minutes over a day) by status,
        from the listing.

        The listing's `since` is on created_at: a job created before the range that
        finished within it is not counted (docs/console.md)."""
        length, step = span_of(span)
        jobs, capped = self._finished_jobs(when, length)
        labels, slot_of = bars(when, length, step)
        series: dict[str, list[int]] = {status: [0] * len(labels) for status in FINISHED}
        for job in jobs:
            slot = slot_of(job.get("finished_at") or job.get("updated_at") or "")
            if slot is not None:
                series[job["status"]][slot] += 1
        return {
            "at": iso_utc(datetime.now(UTC)),
            "range": span,
            "minutes": labels,
            "series": series,
            "total": sum(map(sum, series.values())),
            "capped": capped,
        }

    def _finished_jobs(
        self, when: datetime | None, length: timedelta
    ) -> tuple[list[dict[str, str]], bool]:
        """The finished jobs created within `length` before `when` (CHART_CAP a status)."""
        start = (when or datetime.now(UTC)) - length
        found: list[dict[str, str]] = []
        capped = False
        for status in FINISHED:
            cursor, read = None, 0
            while True:
                page = list_jobs(
                    status,
                    since=iso_utc(start),
                    limit=100,
                    cursor=cursor,
                    client=self.dynamodb(),
                    table=self.names.table,
                )
                found.extend(page.jobs)
                read += len(page.jobs)
                cursor = page.next
                if cursor is None:
                    break
                if read >= CHART_CAP:
                    capped = True
                    break
        return found, capped

    def metrics(self, when: datetime | None = None, span: str = "hour") -> dict[str, Any]:
        """Queue depth over the range, and per task and outcome the p50/p95 of
        submit-to-start and of the run, in seconds.

        Locally from the records (submitted_at or created_at to started_at, started_at to
        finished_at) and from the depths this process saw at each /api/now (the emulator
        keeps no history)."""
        when = when or datetime.now(UTC)
        length, step = span_of(span)
        labels, slot_of = bars(when, length, step)
        depth: list[int | None] = [None] * len(labels)
        for at, count in self._depths:
            slot = slot_of(iso_utc(at))
            if slot is not None:
                depth[slot] = max(depth[slot] or 0, count)
        jobs, capped = self._finished_jobs(when, length)
        waits: dict[str, list[float]] = {}
        runs: dict[str, list[float]] = {}
        for job in jobs:
            name = f"{job.get('task') or '?'} {job['status']}"
            started, finished = when_of(job.get("started_at")), when_of(job.get("finished_at"))
            submitted = when_of(job.get("submitted_at") or job.get("created_at"))
            if started and submitted:
                waits.setdefault(name, []).append(max(0.0, (started - submitted).total_seconds()))
            if started and finished:
                runs.setdefault(name, []).append(max(0.0, (finished - started).total_seconds()))
        names = sorted(set(waits) | set(runs), key=lambda n: -len(runs.get(n, waits.get(n, []))))
        names = sorted(names[:DURATION_SERIES])
        return {
            "at": iso_utc(datetime.now(UTC)),
            "range": span,
            "source": "records",
            "depth": {"labels": labels, "values": depth},
            "durations": durations_view(
                names,
                {n: percentiles(waits.get(n, [])) for n in names},
                {n: percentiles(runs.get(n, [])) for n in names},
            ),
            "capped": capped,
        }

    def jobs(
        self,
        status: str | None,
        cursor: str | None = None,
        limit: int = 25,
        *,
        task: str | None = None,
        since: str | None = None,
    ) -> JobPage:
        """A page of the listing, newest first, of one task and created since a time if
        asked (ValueError: a bad status, task, time or cursor). A SCHEDULED job also has
        its `eta`, read from its record (the listing index does not project it)."""
        page = list_jobs(
            status,
            task=task,
            since=since,
            limit=limit,
            cursor=cursor,
            client=self.dynamodb(),
            table=self.names.table,
        )
        waiting = [job["job_id"] for job in page.jobs if job.get("status") == SCHEDULED]
        if not waiting:
            return page
        etas = self.records().read_many(waiting, "eta")
        jobs = [
            {**job, "eta": eta} if (eta := item_str(etas.get(job["job_id"], {}), "eta")) else job
            for job in page.jobs
        ]
        return JobPage(jobs, page.next)

    @staticmethod
    def statuses() -> tuple[str, ...]:
        """The statuses the listing knows, read from it on each page (a status it adds,
        such as SCHEDULED for a deferred job, shows up without a change here)."""
        return listing.LISTED_STATES

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as GET /jobs/{job_id} shows it (no more: no args, no private message)."""
        if not JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return json.loads(record_json(job_id, self.records().read(job_id)))

    def dead_letters(self) -> list[dlq.DeadLetter]:
        return dlq.peek(self.sqs(), self.url(self.names.dlq))

    def dead_letter(self, message_id: str) -> dict[str, Any] | None:
        """One dead letter: its envelope's headers that say what it is (task, id, retries,
        eta; never its arguments) and its job's public record, which says why it failed.
        None when it is not (or no longer) in the DLQ."""
        found = [m for m in self.dead_letters() if m.message_id == message_id]
        if not found:
            return None
        letter = found[0]
        envelope = dlq.decode_envelope(letter.body) or {}
        headers = envelope.get("headers") if isinstance(envelope.get("headers"), dict) else {}
        shown = {k: headers.get(k) for k in LETTER_HEADERS if headers.get(k) is not None}
        record = None
        if letter.task_id and JOB_ID.match(letter.task_id):
            record = self.job(letter.task_id)
        return {
            "message_id": letter.message_id,
            "receive_count": letter.receive_count,
            "task": letter.task,
            "task_id": letter.task_id,
            "headers": {k: shown[k] for k in LETTER_HEADERS if k in shown},
            "readable": bool(envelope),
            "record": record,
        }

    # --- actions ---------------------------------------------------------------------
    def cancel(self, job_id: str, *, terminate: bool) -> Cancellation:
        """The revoke transition (AsyncResult.revoke / app.control.revoke's): REVOKED unless
        finished; with terminate, its worker also kills it with SIGTERM. A job revoked while
        SCHEDULED also loses its one-time schedule: tasks.results.control.cancel_schedule, as
        revoke does."""
        if not JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        outcome = self.records().revoke(job_id, terminate=signal_name(None) if terminate else None)
        if not (outcome.revoked and outcome.schedule):
            return Cancellation(outcome)
        scheduler = self.scheduler() if self.settings is not None and self.scheduler else None
        return Cancellation(
            outcome, cancel_schedule(self.settings, outcome.schedule, scheduler=scheduler)
        )

    def redrive(self) -> str:
        """tasks.ops.dlq.redrive: each DLQ message back to the queue, its FAILURE record
        reset so that it can run; says how many moved."""
        moved = dlq.redrive(
            self.sqs(),
            self.dynamodb(),
            self.url(self.names.dlq),
            self.url(self.names.queue),
            self.names.table,
        )
        return f"moved {moved} message(s) from {self.names.dlq} back to {self.names.queue}"

    def redrive_progress(self) -> dict[str, Any] | None:
        """The DLQ's latest message move task (AWS only: the local redrive is immediate)."""
        return None

    def redrive_one(self, message_id: str) -> str:
        """One dead letter back to the work queue, its FAILURE record reset as the whole
        redrive does (tasks.results.transitions, `redrive`); says what was done."""
        sqs, dlq_url = self.sqs(), self.url(self.names.dlq)
        held: list[dict[str, Any]] = []
        found = None
        try:
            for _ in range(FIND_ROUNDS):
                batch = sqs.receive_message(
                    QueueUrl=dlq_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=0,
                    VisibilityTimeout=60,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
                if not batch:
                    break
                found = next((m for m in batch if m["MessageId"] == message_id), None)
                held.extend(m for m in batch if m is not found)
                if found is not None:
                    break
        finally:  # the others back into view at once, not in a minute
            for start in range(0, len(held), 10):
                sqs.change_message_visibility_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(held[start : start + 10])
                    ],
                )
        if found is None:
            return f"message {message_id} is not in {self.names.dlq} (already redriven?)"
        letter = dlq.describe(found)
        reset = bool(letter.task_id) and self.records().reset_for_redrive(letter.task_id or "")
        sqs.send_message(QueueUrl=self.url(self.names.queue), MessageBody=letter.body)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        job = f"job {letter.task_id}" if letter.task_id else "an unreadable message"
        return (
            f"moved message {message_id} ({job}) from {self.names.dlq} back to "
            f"{self.names.queue}" + ("; its FAILURE record was reset" if reset else "")
        )


def span_of(span: str) -> tuple[timedelta, timedelta]:
    """A range's length and step ("hour" or "day"; ValueError otherwise)."""
    if span not in RANGES:
        raise ValueError(f"range={span!r}: expected one of {', '.join(RANGES)}")
    return RANGES[span]


def bars(
    when: datetime | None, length: timedelta, step: timedelta
) -> tuple[list[str], Callable[[str], int | None]]:
    """The labels of the steps of `length` ending at `when`'s step, and the slot of an
    ISO-8601 UTC time among them (None: outside)."""
    end = floor(when or datetime.now(UTC), step)
    count = int(length / step)
    start = end - step * (count - 1)
    labels = [(start + step * i).strftime("%H:%M") for i in range(count)]

    def slot_of(stamp: str) -> int | None:
        at = when_of(stamp)
        if at is None:
            return None
        slot = int((at - start) // step)
        return slot if 0 <= slot < count else None

    return labels, slot_of


def floor(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((at - epoch) // step) * step


def when_of(stamp: Any) -> datetime | None:
    """A record's ISO-8601 UTC time ("2026-12-06T17:44:01.123Z"), None if absent or bad."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50 and p95 by nearest rank (the smallest value with at least p% at or below it)."""
    if not values:
        return {"p50": None, "p95": None}
    ordered = sorted(values)

    def rank(p: int) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)

    return {"p50": rank(50), "p95": rank(95)}


def durations_view(
    names: list[str],
    waits: dict[str, dict[str, float | None]],
    runs: dict[str, dict[str, float | None]],
) -> dict[str, Any]:
    """The durations chart: one bar group per task and outcome, four bars each."""
    return {
        "labels": names,
        "series": {
            "submit-to-start p50": [waits[n]["p50"] for n in names],
            "submit-to-start p95": [waits[n]["p95"] for n in names],
            "run p50": [runs[n]["p50"] for n in names],
            "run p95": [runs[n]["p95"] for n in names],
        },
    }


def metric_query(
    query_id: str, namespace: str, name: str, dims: dict[str, str], period: int, stat: str
) -> dict[str, Any]:
    """One GetMetricData query of a metric's statistic."""
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def local_source(settings: Settings) -> Source:
    """The emulator's queue, DLQ and table (`make run`), with the settings' clients."""
    from tasks.ops.clients import dynamodb_client, scheduler_client, sqs_client

    return Source(
        Names(settings.queue_name, settings.dlq_name, settings.table_name),
        lambda: sqs_client(settings),
        lambda: dynamodb_client(settings),
        settings.result_expires,
        "local",
        settings=settings,
        scheduler=lambda: scheduler_client(settings),
    )


@dataclass
class AwsSource(Source):
    """A deployed stack: the Source's reads plus ECS, alarms and the oldest message's age."""

    ecs: Callable[[], Any] | None = None
    cloudwatch: Callable[[], Any] | None = None
    kind: str = "aws"
    metrics_namespace: str = "sqs-jobs"  # the worker's EMF namespace (tasks.worker.metrics)

    def arn(self, name: str) -> str:
        return self.sqs().get_queue_attributes(
            QueueUrl=self.url(name), AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]

    def redrive(self) -> str:
        """SQS's own redrive (StartMessageMoveTask) from the DLQ to the work queue.

        SQS moves the messages without reading them, so first the FAILURE record of each
        dead letter seen now is reset, as tasks.ops.dlq.redrive does (the `redrive`
        transition): its job can run again. A letter that reaches the DLQ after this look
        is moved with its record still FAILURE, which the worker's start refuses (a
        finished job): the record stays true, and the next redrive runs it."""
        reset = 0
        for letter in self.dead_letters():
            if letter.task_id and self.records().reset_for_redrive(letter.task_id):
                reset += 1
        try:
            handle = self.sqs().start_message_move_task(
                SourceArn=self.arn(self.names.dlq), DestinationArn=self.arn(self.names.queue)
            )["TaskHandle"]
        except ClientError as exc:  # one move task at a time per queue, or no right to
            raise ValueError(f"SQS did not start the move: {exc}") from exc
        return (
            f"started moving the messages of {self.names.dlq} back to {self.names.queue} "
            f"(SQS message move task {handle[:12]}…); {reset} FAILURE record(s) reset"
        )

    def redrive_progress(self) -> dict[str, Any] | None:
        """The DLQ's latest message move task (ListMessageMoveTasks), None if it never had
        one: status (RUNNING, COMPLETED, CANCELLED, FAILED...), moved and to move."""
        try:
            tasks = self.sqs().list_message_move_tasks(
                SourceArn=self.arn(self.names.dlq), MaxResults=1
            )["Results"]
        except ClientError as exc:  # without the right, the page still shows the letters
            return {
                "status": "unknown",
                "moved": 0,
                "to_move": None,
                "failure": str(exc),
                "started": "",
            }
        if not tasks:
            return None
        task = tasks[0]
        started = task.get("StartedTimestamp")
        return {
            "status": task.get("Status", "?"),
            "moved": task.get("ApproximateNumberOfMessagesMoved", 0),
            "to_move": task.get("ApproximateNumberOfMessagesToMove"),
            "failure": task.get("FailureReason", ""),
            "started": iso_utc(datetime.fromtimestamp(started / 1000, UTC)) if started else "",
        }

    def metrics(self, when: datetime | None = None, span: str = "hour") -> dict[str, Any]:
        """The same charts from CloudWatch (GetMetricData): SQS's
        ApproximateNumberOfMessagesVisible (the maximum of each step), and the worker's
        EMF metrics per Task and Outcome over the whole range: QueueWait (SentTimestamp
        to the receive) and JobDuration (the run) at p50 and p95."""
        when = when or datetime.now(UTC)
        length, step = span_of(span)
        labels, slot_of = bars(when, length, step)
        end = floor(when, step) + step
        combos = self._emf_series()
        queries = [
            metric_query(
                "depth",
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": self.names.queue},
                int(step.total_seconds()),
                "Maximum",
            )
        ]
        period = int(length.total_seconds())
        for i, dims in enumerate(combos):
            for metric, key in (("QueueWait", "w"), ("JobDuration", "r")):
                for stat in ("p50", "p95"):
                    queries.append(
                        metric_query(
                            f"{key}{i}_{stat}", self.metrics_namespace, metric, dims, period, stat
                        )
                    )
        results = self._metric_data(queries, end - length, end) if self.cloudwatch else {}
        depth: list[float | None] = [None] * len(labels)
        for at, value in results.get("depth", []):
            slot = slot_of(iso_utc(at))
            if slot is not None:
                depth[slot] = value
        names = [f"{d['Task']} {d['Outcome']}" for d in combos]

        def first(query_id: str) -> float | None:
            points = results.get(query_id, [])
            return round(points[-1][1], 3) if points else None

        return {
            "at": iso_utc(datetime.now(UTC)),
            "range": span,
            "source": "cloudwatch",
            "depth": {"labels": labels, "values": depth},
            "durations": durations_view(
                names,
                {n: {s: first(f"w{i}_{s}") for s in ("p50", "p95")} for i, n in enumerate(names)},
                {n: {s: first(f"r{i}_{s}") for s in ("p50", "p95")} for i, n in enumerate(names)},
            ),
            "capped": len(combos) >= DURATION_SERIES,
        }

    def _emf_series(self) -> list[dict[str, str]]:
        """The (Task, Outcome) dimension values the worker has written (ListMetrics)."""
        if self.cloudwatch is None:
            return []
        seen: dict[tuple[str, str], dict[str, str]] = {}
        for metric in ("JobDuration", "QueueWait"):
            pages = (
                self.cloudwatch()
                .get_paginator("list_metrics")
                .paginate(Namespace=self.metrics_namespace, MetricName=metric)
            )
            for page in pages:
                for found in page.get("Metrics", []):
                    dims = {d["Name"]: d["Value"] for d in found.get("Dimensions", [])}
                    if set(dims) == {"Task", "Outcome"}:
                        seen[(dims["Task"], dims["Outcome"])] = dims
        return [seen[k] for k in sorted(seen)][:DURATION_SERIES]

    def _metric_data(
        self, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """GetMetricData's points per query id, oldest first, over every page."""
        points: dict[str, list[tuple[datetime, float]]] = {}
        token = None
        while True:
            kwargs: dict[str, Any] = {"NextToken": token} if token else {}
            answer = self.cloudwatch().get_metric_data(  # type: ignore[misc]
                MetricDataQueries=queries,
                StartTime=start,
                EndTime=end,
                ScanBy="TimestampAscending",
                **kwargs,
            )
            for result in answer.get("MetricDataResults", []):
                points.setdefault(result["Id"], []).extend(
                    zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
                )
            token = answer.get("NextToken")
            if not token:
                return points

    def now(self, when: datetime | None = None) -> dict[str, Any]:
        view = super().now(when)
        view["service"] = self.service()
        view["alarms"] = self.alarms()
        firing = [a["name"] for a in view["alarms"] if a["state"] == "ALARM"]
        if firing:
            view["attention"].append("alarm: " + ", ".join(firing))
        service = view["service"]
        for d in service["deploying"] if service else []:
            if d["rollout"] == "FAILED" or d["failed"]:
                view["attention"].append(
                    f"deployment of {d['task_definition']}: {d['rollout'] or d['status']}, "
                    f"{d['failed']} failed task(s)"
                )
        if service and service["running"] < service["desired"]:
            view["attention"].append(
                f"{service['running']} of {service['desired']} worker task(s) running"
            )
        return view

    def service(self) -> dict[str, Any] | None:
        if self.ecs is None or not self.names.cluster or not self.names.service:
            return None
        found = self.ecs().describe_services(
            cluster=self.names.cluster, services=[self.names.service]
        )["services"]
        active = [s for s in found if s.get("status") == "ACTIVE"]
        if not active:
            return None
        s = active[0]
        deployments = [
            {
                "status": d.get("status", "?"),
                "task_definition": d.get("taskDefinition", "").rsplit("/", 1)[-1],
                "running": d.get("runningCount", 0),
                "desired": d.get("desiredCount", 0),
                "failed": d.get("failedTasks", 0),
                "rollout": d.get("rolloutState", ""),
            }
            for d in s.get("deployments", [])
        ]
        # ECS keeps one PRIMARY deployment once a rollout is over; a second one (ACTIVE:
        # the old tasks draining) or a rollout not COMPLETED is a deployment in progress.
        moving = len(deployments) > 1 or any(
            d["rollout"] in ("IN_PROGRESS", "FAILED") for d in deployments
        )
        return {
            "running": s.get("runningCount", 0),
            "desired": s.get("desiredCount", 0),
            "pending": s.get("pendingCount", 0),
            "deployments": deployments,
            "deploying": deployments if moving else [],
        }

    def alarms(self) -> list[dict[str, str]]:
        if self.cloudwatch is None or not self.names.alarms:
            return []
        found = {
            a["AlarmName"]: a
            for a in self.cloudwatch().describe_alarms(AlarmNames=list(self.names.alarms))[
                "MetricAlarms"
            ]
        }
        return [
            {
                "name": name,
                "state": found[name].get("StateValue", "?") if name in found else "not deployed",
                "reason": found[name].get("StateReason", "") if name in found else "",
            }
            for name in self.names.alarms
        ]

    def oldest_age(self, when: datetime) -> int | None:
        """SQS's ApproximateAgeOfOldestMessage (a CloudWatch metric, one-minute points)."""
        if self.cloudwatch is None:
            return None
        return oldest_message_age(self.cloudwatch(), self.names.queue, when)
