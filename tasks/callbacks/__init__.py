"""Completion callbacks: a signed POST of the job's record when the job ends.

Asking for one: the message header `callback_url` (over HTTP the `X-Callback-Url` request
header, which the POST template copies there; from Python `headers=callback(url)`):

    from tasks.client import app, callback
    app.send_task("tasks.text.analyze", kwargs={...}, headers=callback("https://..."))
    analyze.apply_async(kwargs={...}, headers=callback("https://..."))

Delivering one, at least once: when a job with that header ends (SUCCESS, FAILURE or
REVOKED; never on RETRY), the pool process that wrote the terminal record enqueues the
built-in task `deliver` on the work queue *before* the job's message is acknowledged, so a
worker that dies in between runs the job's message again and enqueues it then (or, when
SUCCESS was stored, Celery acknowledges without a rerun and the main process enqueues it:
tasks.callbacks.lost_run). `deliver`
(tasks.callbacks.attempt) POSTs the record as GET /jobs/{id} shows it, signed
(tasks.callbacks.signing), to an address vetted by tasks.callbacks.target, and
retries with exponential backoff and full jitter (Celery's retry with a countdown) within
JOBS_CALLBACK_MAX_ATTEMPTS and JOBS_CALLBACK_DEADLINE. Each attempt and the outcome are
written to the record's `callback` map (tasks.results.records.JobRecords.record_callback).
The delivery's message is sealed (an HMAC of job id and URL under the callback key), so a
`deliver` sent by hand to the queue is dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import shared_task, states

from tasks.callbacks.target import check_form
from tasks.ops.settings import Settings
from tasks.results.revoked_mark import revoked_noted
from tasks.results.run_lease import duplicate_finished

log = logging.getLogger(__name__)

HEADER = "callback_url"
DELIVER_TASK = "tasks.callbacks.deliver"
TERMINAL = (states.SUCCESS, states.FAILURE, states.REVOKED)


def callback(url: str, settings: Settings | None = None) -> dict[str, str]:
    """The `headers=` of a submission that asks for a callback to `url`.

    Raises CallbackRefused (a ValueError) at once for a URL no worker would call: not
    https (http only to loopback when JOBS_TARGET=local), userinfo, no host, port 0. The
    address rules need DNS and the worker's allow-list: the worker checks those."""
    settings = settings or Settings.from_env()  # a caller's own process: no app at hand
    return {HEADER: check_form(url, local=settings.local)}


def enqueue_if_ended(task: Any, state: str | None) -> None:
    """In the pool process, after the terminal write and before the message's ack: enqueue
    the delivery if the job asked for one and has ended (the worker's CompletionCallbacks
    middleware calls it from its `run_ended` hook)."""
    request = getattr(task, "request", None)
    url = getattr(request, HEADER, None)
    task_id = getattr(request, "id", None)
    if not url or not task_id or getattr(request, "is_eager", False):
        return
    if getattr(task, "name", None) == DELIVER_TASK:
        return
    if state == states.IGNORED and revoked_noted(request):
        state = states.REVOKED  # dropped because its record says REVOKED
    elif state == states.IGNORED and duplicate_finished(request):
        # A message of a job that had finished: maybe the run that finished it died
        # before its enqueue (a FAILURE is handed back, then dropped here). Enqueue again;
        # a delivered callback is not sent twice (tasks.callbacks.attempt).
        state = duplicate_finished(request)
    if state not in TERMINAL or getattr(task, "ignore_result", False):
        return  # RETRY: not the end yet; ignore_result: no record to send
    enqueue(task_id, str(url), Settings.of(task.app))


def enqueue(job_id: str, url: str, settings: Settings) -> None:
    """Send the delivery task for a finished job (on the work queue, like any job)."""
    deliver.apply_async(
        kwargs={
            "job_id": job_id,
            "url": url,
            "first_at": time.time(),
            "seal": seal_for(settings, job_id, url),
        }
    )


def seal_for(settings: Settings, job_id: str, url: str) -> str | None:
    """An HMAC of (job id, URL) under the callback key. Anyone who may send to the queue
    could otherwise submit `deliver` by hand and have any job's record sent, signed, to a
    URL of theirs; only a worker holding the key can seal a delivery."""
    if not settings.callback_secret:
        return None
    return hmac.new(
        settings.callback_secret.encode(), f"deliver\n{job_id}\n{url}".encode(), hashlib.sha256
    ).hexdigest()


def sealed(settings: Settings, job_id: Any, url: Any, value: Any) -> bool:
    """Was this delivery sealed by a worker with our key? (No key: refused later anyway.)"""
    if not settings.callback_secret:
        return True
    expected = seal_for(settings, str(job_id), str(url))
    return isinstance(value, str) and expected is not None and hmac.compare_digest(expected, value)


# An AWS error while reading or writing the record is retried too (Celery's autoretry, with
# full jitter); the HTTP outcomes are retried by the attempt's own rules.
@shared_task(
    name=DELIVER_TASK,
    bind=True,
    ignore_result=True,
    acks_late=True,
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=(BotoCoreError, ClientError),
    max_retries=10,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
)
def deliver(
    self: Any, job_id: str, url: str, first_at: float | None = None, seal: str | None = None
) -> None:
    """One delivery attempt; retries itself (countdown) until delivered or given up."""
    from tasks.callbacks.attempt import attempt

    settings = Settings.of(self.app)
    if not sealed(settings, job_id, url, seal):
        log.warning(
            "a delivery for job %s was not sealed by a worker of this stack: dropped", job_id
        )
        return
    first_at = first_at or time.time()
    delay = attempt(
        self.backend,
        job_id,
        url,
        attempt=self.request.retries + 1,
        first_at=first_at,
        settings=settings,
    )
    if delay is not None:  # the attempt's own bounds decide; Celery's must not cut in first
        raise self.retry(
            countdown=delay,
            max_retries=settings.callback_max_attempts + 1,
            kwargs={"job_id": job_id, "url": url, "first_at": first_at, "seal": seal},
        )
