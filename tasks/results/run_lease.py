"""A job's run lease: at most one run of a job id at a time, and none once it finished.

The STARTED write (tasks.results.records.JobRecords.transition) takes the lease: it sets
`run_lease` (epoch seconds: now + the queue's visibility timeout) and `run_token` (this
delivery: `<SQS message id>:<receive count>`), on the condition that the record is not
terminal and that no other run holds an unexpired lease. While the job runs, its worker
renews the lease on the visibility heartbeat's beat (tasks.worker.lease_heartbeat); every
terminal write removes it, and a Celery retry (RETRY) leaves it to lapse.

Who may start, besides a job with no lease or an expired one:

* the same SQS message received again (its run token names the same message with a lower
  receive count): SQS delivers a message again only once the earlier receiver let its
  visibility lapse or handed it back, so that run is gone (crashed, lost, shut down) or
  wedged past its heartbeat; the job must run again;
* the message of a later Celery retry (`retries` above the record's): it may start at once,
  even before the RETRY write (`Task.retry` sends it first), while a duplicate of an
  earlier attempt waits for the lease to lapse like any other.

Anything else (a POST retried with the same Idempotency-Key, `apply_async(task_id=...)`
sent twice, a redrive while the job runs) is a duplicate: its STARTED write is refused, and
the job does not run (tasks.jobkit.task.JobTask.before_start; the message is acknowledged).

The backend marks the request with the refused record (`note_duplicate`); the job side
reads the mark. It lives here, beside the records, as tasks.results.revoked_mark does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from celery import states

# The attributes the mark is kept in, on Celery's request context (task.request).
DUPLICATE_MARK = "job_duplicate_of"
DUPLICATE_STATUS = "job_duplicate_status"
# DynamoDB's IN takes at most 100 operands: the token itself and 99 earlier receives.
MAX_EARLIER_RECEIVES = 99


def run_token(message_id: str | None, receive_count: int | None) -> str:
    """This delivery's token: `<message id>:<receive count>`, or a fresh one (no SQS)."""
    if message_id and isinstance(receive_count, int) and receive_count > 0:
        return f"{message_id}:{receive_count}"
    return f"run-{uuid.uuid4()}"


def earlier_tokens(token: str) -> list[str]:
    """The tokens the same SQS message had on its earlier receives (newest first)."""
    message_id, _, count = token.rpartition(":")
    if not message_id or not count.isdigit():
        return []
    first = max(1, int(count) - MAX_EARLIER_RECEIVES)
    return [f"{message_id}:{n}" for n in range(int(count) - 1, first - 1, -1)]


def note_duplicate(request: Any, refusal: dict) -> None:
    """Remember on the request which record refused its STARTED write (not REVOKED)."""
    setattr(request, DUPLICATE_MARK, describe(refusal))
    setattr(request, DUPLICATE_STATUS, (refusal.get("status") or {}).get("S"))


def duplicate_noted(request: Any) -> str | None:
    """Why this request's job must not run (another run holds it, or it finished)."""
    value = getattr(request, DUPLICATE_MARK, None)
    return value if isinstance(value, str) else None


def duplicate_finished(request: Any) -> str | None:
    """The refusing record's terminal status (SUCCESS, FAILURE, REVOKED), if it was one."""
    status = getattr(request, DUPLICATE_STATUS, None)
    return status if status in (states.SUCCESS, states.FAILURE, states.REVOKED) else None


def describe(item: dict) -> str:
    """What a refusing record says, for the log: finished, or running where and until when."""
    status = (item.get("status") or {}).get("S") or "PENDING"
    if status in (states.SUCCESS, states.FAILURE, states.REVOKED):
        return f"already {status}"
    worker = (item.get("worker") or {}).get("S") or "another worker"
    lease = (item.get("run_lease") or {}).get("N")
    until = (
        datetime.fromtimestamp(int(lease), UTC).isoformat(timespec="seconds")
        if lease and lease.isdigit()
        else "?"
    )
    return f"already running on {worker} (lease until {until})"
