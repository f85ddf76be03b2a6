"""One attempt at a completion callback, and what it writes to the record's `callback`.

The body is the record exactly as GET /jobs/{id} shows it, without its `callback` field
(which changes with every attempt): the worker renders the very template API Gateway
runs (tasks.http_contract.record) over the record's item, so the two cannot drift, and the
fields a job does not expose over HTTP are not sent either (what it exposes is read from
its task in the app: @job(expose=...)): nor is the message of an error that is not public
(the record holds it for Python only: tasks.results.public_errors).

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

import logging
import random
import time
from typing import Any

from celery import current_app

from tasks.callbacks.post import PostFailed, post
from tasks.callbacks.signing import SIGNATURE_HEADER, sign
from tasks.callbacks.target import CallbackRefused, vet
from tasks.http_contract.record import record_json
from tasks.ops.settings import Settings
from tasks.results.encoding import item_str, utc_now
from tasks.results.transitions import TERMINAL_STATES

log = logging.getLogger(__name__)

USER_AGENT = "sqs-jobs-callback/1"
RETRYABLE_4XX = (408, 429)


def exposed_by(task_name: str | None, app: Any = None) -> list[str]:
    """The `task:field` words of what the record's job shows over HTTP, from the task the app
    registered (@job(expose=...) sets `expose` on it; the worker has every job loaded). A task
    the app does not know shows nothing more, as GET /jobs/{id} shows it nothing more."""
    task = (app or current_app).tasks.get(task_name or "")
    return [f"{task_name}:{field}" for field in sorted(getattr(task, "expose", ()))]


def record_body(job_id: str, item: dict[str, Any], app: Any = None) -> bytes:
    """The record as GET /jobs/{id} answers it, minus `callback`: the bytes that are signed."""
    shown = {key: value for key, value in item.items() if key != "callback"}
    return record_json(job_id, shown, exposed_by(item_str(item, "task"), app)).encode()


def backoff(attempt: int, settings: Settings) -> float:
    """Full jitter: uniform over [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(settings.callback_max_delay, settings.callback_backoff * 2 ** (attempt - 1))
    return random.uniform(0, ceiling)


def attempt(
    backend: Any, job_id: str, url: str, *, attempt: int, first_at: float, settings: Settings
) -> float | None:
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
    callback: dict[str, str | int] = {
        "state": "pending",
        "attempts": attempt,
        "last_attempt_at": utc_now(),
    }
    if not settings.callback_secret:
        callback["attempts"] = attempt - 1  # nothing was sent
        return _final(
            records,
            job_id,
            callback,
            "refused",
            "JOBS_CALLBACK_SECRET is not set on the worker; callbacks are never sent unsigned",
        )
    try:
        target = vet(url, local=settings.local, allow=settings.callback_allow)
    except CallbackRefused as exc:
        if not exc.retryable:
            callback["attempts"] = attempt - 1
            return _final(records, job_id, callback, "refused", exc.reason)
        return _again(records, job_id, callback, exc.reason, attempt, first_at, settings)
    callback["host"] = target.host_header
    body = record_body(job_id, item, getattr(backend, "app", None))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Job-Id": job_id,
        SIGNATURE_HEADER: sign(settings.callback_secret, body),
    }
    try:
        status = post(target, body, headers)
    except PostFailed as exc:
        return _again(records, job_id, callback, str(exc), attempt, first_at, settings)
    callback["last_status"] = status
    if 200 <= status < 300:
        callback["delivered_at"] = utc_now()
        return _final(records, job_id, callback, "delivered", None)
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return _final(
            records, job_id, callback, "failed", f"the receiver answered {status}; not retried"
        )
    why = (
        f"the receiver answered {status} (redirects are not followed)"
        if 300 <= status < 400
        else f"the receiver answered {status}"
    )
    return _again(records, job_id, callback, why, attempt, first_at, settings)


def _final(
    records: Any, job_id: str, callback: dict[str, str | int], state: str, error: str | None
) -> None:
    callback["state"] = state
    if error:
        callback["last_error"] = error[:500]
    if state in ("failed", "refused"):
        callback["given_up_at"] = utc_now()
    records.record_callback(job_id, callback)
    log.log(
        logging.INFO if state == "delivered" else logging.WARNING,
        "callback for job %s %s%s",
        job_id,
        state,
        f": {error}" if error else "",
    )
    return None


def _again(
    records: Any,
    job_id: str,
    callback: dict[str, str | int],
    error: str,
    attempt: int,
    first_at: float,
    settings: Settings,
) -> float | None:
    delay = backoff(attempt, settings)
    if (
        attempt >= settings.callback_max_attempts
        or time.time() + delay - first_at > settings.callback_deadline
    ):
        return _final(
            records, job_id, callback, "failed", f"gave up after {attempt} attempts: {error}"
        )
    callback["last_error"] = error[:500]
    records.record_callback(job_id, callback)
    log.info(
        "callback for job %s: attempt %d failed (%s); again in %.1fs", job_id, attempt, error, delay
    )
    return delay
