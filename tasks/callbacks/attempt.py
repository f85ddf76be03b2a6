"""One attempt at a completion callback, and what it writes to the record's `callback`.

The body is the record exactly as GET /jobs/{id} shows it, without its `callback` field
(which changes with every attempt): the worker renders the very template API Gateway
runs (api_shim/templates/get_job.response.vtl) over the record's item, so the two cannot
drift, and the fields a job does not expose over HTTP are not sent either: nor is the
message of an error that is not public (the record holds it for Python only:
tasks.jobkit.public_errors).

Outcomes, in the record's `callback.state`:
* `delivered`: a 2xx answer;
* `failed`: a 4xx other than 408 and 429 (the receiver refuses these bytes; sending them
  again cannot help), or retries used up (JOBS_CALLBACK_MAX_ATTEMPTS, or the next try
  would fall past JOBS_CALLBACK_DEADLINE seconds after the first);
* `refused`: never attempted: no JOBS_CALLBACK_SECRET on the worker (a callback is never
  sent unsigned), or the URL broke a rule of tasks.callbacks.target;
* `pending`: an attempt failed (3xx, 408, 429, 5xx, timeout, connection or TLS error, a
  name that did not resolve) and another is scheduled, with full jitter.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from typing import Any

from billiard.exceptions import Terminated, WorkerLostError
from celery import states

from tasks.callbacks.post import PostFailed, post
from tasks.callbacks.signing import SIGNATURE_HEADER, sign
from tasks.callbacks.target import CallbackRefused, vet
from tasks.ops.settings import Settings
from tasks.results.records import TERMINAL_STATES, item_str, utc_now
from tasks.worker.celery_private import request_dict

log = logging.getLogger(__name__)

USER_AGENT = "sqs-jobs-callback/1"
RETRYABLE_4XX = (408, 429)


@functools.lru_cache(maxsize=1)
def _record_template() -> str:
    from api_shim.openapi import exposed_words, fill_template
    from tasks.jobkit.registry import all_jobs

    return fill_template("get_job.response", exposed=exposed_words(all_jobs()))


def record_body(job_id: str, item: dict[str, Any]) -> bytes:
    """The record as GET /jobs/{id} answers it, minus `callback`: the bytes that are signed."""
    from api_shim.vtl import Params, render

    shown = {key: value for key, value in item.items() if key != "callback"}
    rendered = render(_record_template(), body=json.dumps({"Item": shown}),
                      params=Params(path={"job_id": job_id}),
                      # $context.path: what result_url is built from (relative to the
                      # API's base URL; API Gateway's own path starts with the stage)
                      context={"requestId": job_id, "path": f"/jobs/{job_id}",
                               "resourcePath": "/jobs/{job_id}", "httpMethod": "GET"})
    return rendered.text.encode()


def backoff(attempt: int, settings: Settings) -> float:
    """Full jitter: uniform over [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(settings.callback_max_delay, settings.callback_backoff * 2 ** (attempt - 1))
    return random.uniform(0, ceiling)


def attempt(backend: Any, job_id: str, url: str, *, attempt: int, first_at: float,
            settings: Settings) -> float | None:
    """Make attempt number `attempt`; the countdown to the next one, or None when done."""
    item = backend.records.read(job_id)
    if item_str(item, "status") not in TERMINAL_STATES:
        log.warning("callback for job %s dropped: the job has no finished record", job_id)
        return None
    known = item.get("callback", {}).get("M", {})
    if item_str(known, "state") not in (None, "pending"):
        log.info("callback for job %s already %s", job_id, item_str(known, "state"))
        return None
    records = backend.records
    callback: dict[str, str | int] = {"state": "pending", "attempts": attempt,
                                      "last_attempt_at": utc_now()}
    if not settings.callback_secret:
        callback["attempts"] = attempt - 1  # nothing was sent
        return _final(records, job_id, callback, "refused",
                      "JOBS_CALLBACK_SECRET is not set on the worker; callbacks are never "
                      "sent unsigned")
    try:
        target = vet(url, local=settings.local, allow=settings.callback_allow)
    except CallbackRefused as exc:
        if not exc.retryable:
            callback["attempts"] = attempt - 1
            return _final(records, job_id, callback, "refused", exc.reason)
        return _again(records, job_id, callback, exc.reason, attempt, first_at, settings)
    callback["host"] = target.host_header
    body = record_body(job_id, item)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Job-Id": job_id, SIGNATURE_HEADER: sign(settings.callback_secret, body)}
    try:
        status = post(target, body, headers)
    except PostFailed as exc:
        return _again(records, job_id, callback, str(exc), attempt, first_at, settings)
    callback["last_status"] = status
    if 200 <= status < 300:
        callback["delivered_at"] = utc_now()
        return _final(records, job_id, callback, "delivered", None)
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return _final(records, job_id, callback, "failed",
                      f"the receiver answered {status}; not retried")
    why = (f"the receiver answered {status} (redirects are not followed)"
           if 300 <= status < 400 else f"the receiver answered {status}")
    return _again(records, job_id, callback, why, attempt, first_at, settings)


def _final(records: Any, job_id: str, callback: dict[str, str | int], state: str,
           error: str | None) -> None:
    callback["state"] = state
    if error:
        callback["last_error"] = error[:500]
    if state in ("failed", "refused"):
        callback["given_up_at"] = utc_now()
    records.record_callback(job_id, callback)
    log.log(logging.INFO if state == "delivered" else logging.WARNING,
            "callback for job %s %s%s", job_id, state, f": {error}" if error else "")
    return None


def _again(records: Any, job_id: str, callback: dict[str, str | int], error: str,
           attempt: int, first_at: float, settings: Settings) -> float | None:
    delay = backoff(attempt, settings)
    if (attempt >= settings.callback_max_attempts
            or time.time() + delay - first_at > settings.callback_deadline):
        return _final(records, job_id, callback, "failed",
                      f"gave up after {attempt} attempts: {error}")
    callback["last_error"] = error[:500]
    records.record_callback(job_id, callback)
    log.info("callback for job %s: attempt %d failed (%s); again in %.1fs", job_id, attempt,
             error, delay)
    return delay



def deliver_after_lost_run(request: Any, exc: BaseException) -> None:
    """A job whose pool process died or was killed where Celery then acknowledges its
    message without running it again: SUCCESS stored before the process was lost, or a
    job revoked with terminate (its process gets the signal). Its postrun may never have
    enqueued the callback, so enqueue it here, in the main process, before that ack. One
    GetItem and one SendMessage, on these rare paths only; a duplicate is harmless (at
    least once, and a delivered callback is not sent again)."""
    exc = getattr(exc, "exc", exc)  # billiard wraps it in ExceptionWithTraceback
    if not isinstance(exc, WorkerLostError | Terminated):
        return
    from tasks.callbacks import HEADER, enqueue

    url = request_dict(request).get(HEADER)
    if not url:
        return
    try:
        if request.task.backend.record_status(request.id) in (states.SUCCESS, states.REVOKED):
            enqueue(request.id, str(url))
    except Exception:
        log.exception("job %s: could not enqueue its callback after its process was lost",
                      request.id)
