"""A callback after a lost run: the main process enqueues what the pool process could not.

A job whose pool process died or was killed may have stored its terminal record without
enqueueing its callback (tasks.callbacks enqueues it from the pool process, after the write).
The worker's request (tasks.worker.request) calls this before Celery acknowledges such a job.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states

from tasks.callbacks import HEADER, enqueue
from tasks.celery_private import Terminated, WorkerLostError, request_dict
from tasks.ops.settings import Settings

log = logging.getLogger(__name__)


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
    url = request_dict(request).get(HEADER)
    if not url:
        return
    try:
        if request.task.backend.record_status(request.id) in (states.SUCCESS, states.REVOKED):
            enqueue(request.id, str(url), Settings.of(request.task.app))
    except Exception:
        log.exception(
            "job %s: could not enqueue its callback after its process was lost", request.id
        )
