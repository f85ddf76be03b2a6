"""Deferral: a job due further ahead than SQS holds a message waits in EventBridge Scheduler.

A message whose `eta` lies more than `Settings.defer_after` seconds (900: SQS's longest
DelaySeconds) ahead when a worker first receives it is taken before Celery sees it, so no
worker reserves it and no message stays in flight while it waits:

1. its body, verbatim, becomes the Input of a one-time schedule `at(<eta>)` whose target is
   the work queue (tasks.ops.one_time_schedules); the name comes from the job's id and
   retries, so a second delivery of the same message finds it made (ConflictException);
2. the job's record says SCHEDULED, with its eta, its retries and the schedule's name
   (which revoke deletes); a record that is already past waiting (revoked, run) cancels
   the schedule;
3. only then is the message acknowledged.

When the schedule fires, the same message comes back, its eta due, and runs as any other.
Steps 1-2 run on a thread of this middleware, never on the event loop; the answer comes
back with `consumer.call_soon`. If any step fails (throttling and 5xx after the client's
own retries, DynamoDB down), nothing is acknowledged: the message is given back to SQS with
a short backoff, and the next receive tries again, until SQS's redrive moves it to the DLQ.

Deferral is off where there is no scheduler role to send with (Settings.scheduler_role_arn,
set by `ecs deploy` and locally): then a worker holds an ETA for up to 11 hours and refuses
one beyond (tasks.worker.visibility). It also declines, and leaves the job to that path, a
message whose arguments were put in S3 (claim check) when its ETA lies beyond the bucket's
expiry of those objects: the job could not run without them.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from celery import states

from tasks.ops import one_time_schedules
from tasks.ops.provision import DAY_SECONDS, payload_days
from tasks.ops.settings import Settings
from tasks.results.encoding import item_num, item_str
from tasks.submit.sqs_delay import eta_text, parse_eta
from tasks.worker.gate import job_identity
from tasks.worker.middleware.base import Middleware, Taken
from tasks.worker.sqs_io import sqs_io
from tasks.worker.sqs_messages import receive_count, sqs_location

log = logging.getLogger(__name__)

# A failed deferral's message comes back after this many seconds times its receive count.
RETRY_BACKOFF = 30
MAX_BACKOFF = 900


def raw_body(message: Any) -> str | None:
    """The SQS body the message arrived with (kombu's base64 envelope), verbatim."""
    try:
        body = message.delivery_info["sqs_message"]["Body"]
    except (AttributeError, KeyError, TypeError):
        return None
    return body if isinstance(body, str) and body else None


def is_retry_of_running(record: dict, message: Any) -> bool:
    """Whether a message refused by this record is the retry its running run just sent: the
    record is STARTED/PROGRESS with fewer retries than the message carries (a duplicate of
    the run's own message carries as many)."""
    status = item_str(record, "status")
    if status not in (states.STARTED, "PROGRESS"):
        return False
    retries = (getattr(message, "headers", None) or {}).get("retries")
    return isinstance(retries, int) and retries > (item_num(record, "retries") or 0)


class Deferral(Middleware):
    """Takes messages due further ahead than `defer_after` and defers them (module doc)."""

    def __init__(self, settings: Settings, clock=lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock
        self._threads: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._threads is None:  # made on first use: after the pool's processes forked
            self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="deferral")
        return self._threads

    def consumer_stopping(self, consumer: Any) -> None:
        # Never wait on the loop: a deferral cut short leaves its message unacknowledged, so
        # SQS delivers it again and the next try finds its schedule made (ConflictException).
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None

    def due_to_defer(self, message: Any) -> tuple[str, str, datetime, str] | None:
        """(job id, task, eta, body) if this message is to be deferred, else None."""
        if not one_time_schedules.enabled(self.settings):
            return None
        headers = getattr(message, "headers", None)
        if not isinstance(headers, dict):
            return None
        eta = parse_eta(headers.get("eta"))
        if eta is None:
            return None
        wait = (eta - self.clock()).total_seconds()
        if wait <= self.settings.defer_after:
            return None
        job_id, task = job_identity(message)
        body = raw_body(message)
        if job_id is None or task is None or body is None or sqs_location(message) is None:
            return None
        if headers.get("payload_ref"):
            lifetime = payload_days(self.settings.result_expires) * DAY_SECONDS
            if wait >= lifetime - DAY_SECONDS:
                log.warning(
                    "job %s: not deferred: its arguments in S3 expire before its ETA %s",
                    job_id,
                    eta_text(eta),
                )
                return None
        return job_id, task, eta, body

    def screen_message(self, consumer: Any, message: Any) -> Taken | None:
        found = self.due_to_defer(message)
        if found is None:
            return None
        job_id, task, eta, body = found
        retries = message.headers.get("retries") or 0
        retries = retries if isinstance(retries, int) else 0
        name = one_time_schedules.schedule_name(job_id, retries)
        self._executor().submit(
            self._defer, consumer, message, job_id, task, eta, body, name, retries
        )
        return Taken(job_id, f"deferred to the schedule {name}")

    def _defer(
        self,
        consumer: Any,
        message: Any,
        job_id: str,
        task: str,
        eta: datetime,
        body: str,
        name: str,
        retries: int = 0,
    ) -> None:
        """On this middleware's thread: schedule, record, then acknowledge on the loop."""
        try:
            created = one_time_schedules.create(self.settings, name=name, at=eta, body=body)
            refusal: dict = {}
            waiting = consumer.app.backend.records.mark_scheduled(
                job_id,
                task=task,
                eta=eta_text(eta),
                schedule=name,
                retries=retries,
                refusal=refusal,
            )
            if not waiting and is_retry_of_running(refusal, message):
                # self.retry() sends its message before its run writes RETRY: the record
                # still says the run. Hand the message back; the next receive finds RETRY
                # and its schedule made (ConflictException), and the retry waits as asked.
                log.info("job %s: a retry received before its run recorded it; again", job_id)
                consumer.call_soon(self._give_back, message)
                return
            if not waiting:
                # Revoked, or run, before it could wait: the schedule must not fire it.
                one_time_schedules.cancel(self.settings, name)
                log.info("job %s: not waiting any more (record past it); schedule removed", job_id)
            else:
                log.info(
                    "job %s[%s] deferred until %s by schedule %s%s",
                    task,
                    job_id,
                    eta_text(eta),
                    name,
                    "" if created else " (made already)",
                )
        except Exception as exc:
            log.warning("job %s: deferral failed (%s); SQS delivers it again", job_id, exc)
            consumer.call_soon(self._give_back, message)
            return
        consumer.call_soon(message.ack)

    def _give_back(self, message: Any) -> None:
        """On the loop: hide the message for a backoff, then free its prefetch slot without
        deleting it (kombu's reject leaves a message of a queue with a redrive policy)."""
        where = sqs_location(message)
        count = receive_count(message) or 1
        if where is not None:
            delay = min(RETRY_BACKOFF * count, MAX_BACKOFF)
            sqs_io(self.settings).change_visibility(*where, timeout=delay)
        try:
            message.reject(requeue=False)
        except Exception:
            log.exception("could not give back the message of a failed deferral")
