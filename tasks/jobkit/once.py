"""Side effects that happen once per key, even when SQS delivers a job twice.

    with once(self, f"email:{self.request.id}") as mine:
        if mine:
            send_the_email()

A lease, not a flag: the first caller claims the key for `lease_seconds`; when the block
finishes the key is marked done and no later caller runs it. If the block raises, the claim
is given up at once so a retry can run it. If the process dies inside the block:

* the job's next run (its message redelivered, or a retry) takes the claim over at once:
  the job's run lease lets one run at a time hold the job, so the claimer is gone;
* any other claimer of the key (another job using the same key) finds it busy, and its job
  is retried (Celery's retry, not counted against max_retries) when the claim lapses.

So a crash between the claim and the mark never skips the effect; it runs it again. An
effect outside the table (an e-mail, a payment) that happened just before the crash is
done twice: make it idempotent at its receiver where you can (an idempotency key), as no
lease can make an external effect and a table write one atomic step.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

DEFAULT_LEASE_SECONDS = 300


class EffectInProgress(Exception):
    """Another live claim holds the key: the effect is neither done nor ours to do yet."""


@contextlib.contextmanager
def once(task: Any, key: str, *, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> Iterator[bool]:
    """Yield True to exactly one caller per key at a time, until one finishes the block;
    False once it is done. A key held by another live claim retries the job."""
    records = task.app.backend.records
    request = getattr(task, "request", None)
    job_id = getattr(request, "id", None)
    run = getattr(request, "run_token", None)
    token = str(uuid.uuid4())
    claim = records.claim_lease(
        key,
        lease_seconds,
        token,
        job_id=job_id if isinstance(job_id, str) else None,
        run=run if isinstance(run, str) else None,
    )
    if not claim.claimed:
        if claim.done:
            yield False
            return
        raise busy(task, key, claim.until)
    try:
        yield True
    except BaseException:
        records.release_lease(key, token)
        raise
    records.finish_lease(key)


def busy(task: Any, key: str, until: int | None) -> BaseException:
    """What a caller that found the key held gets: a retry of its job when the claim lapses
    (counted on top of max_retries, which is for the job's own failures), or, outside a
    job, EffectInProgress."""
    wait = max(1, (until or 0) - int(time.time()) + 1)
    error = EffectInProgress(
        f"side effect {key!r} is being done by another claim (held for {wait} s more)"
    )
    request = getattr(task, "request", None)
    if request is None or getattr(request, "called_directly", True) or not hasattr(task, "retry"):
        return error
    retries = getattr(request, "retries", 0) or 0
    return task.retry(exc=error, countdown=wait, max_retries=retries + 1, throw=False) or error
