"""A job whose worker process dies on every delivery: recorded FAILURE before the DLQ takes it.

When a pool process dies mid-job (out of memory, a segfault, `os._exit`), Celery
hands the message back (`task_reject_on_worker_lost`) and records nothing, so
that the next delivery can run it. On the last delivery SQS allows
(maxReceiveCount), the next receive moves the message to the dead-letter queue
instead, and without this the job's record would stay STARTED for ever.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states

from tasks.celery_private import WorkerLostError, delivery_count, request_context
from tasks.ops.settings import Settings
from tasks.worker.middleware.base import Middleware

log = logging.getLogger(__name__)


class WorkerProcessLost(Exception):
    """The process running the job died on each of its deliveries."""


def record_if_final_loss(request, exc: BaseException) -> bool:
    """On the final delivery, record FAILURE for a job whose process died; True if it did."""
    exc = getattr(exc, "exc", exc)  # billiard wraps it in ExceptionWithTraceback
    count = delivery_count(request)
    if not isinstance(exc, WorkerLostError) or count is None:
        return False
    if count < Settings.of(request.app).max_receive_count:
        return False
    reason = WorkerProcessLost(
        f"the worker process died while running this job on each of its {count} deliveries "
        f"(last: {exc}); it may need more memory, or it crashes its process. "
        "The message goes to the dead-letter queue."
    )
    log.error("job %s: %s", request.id, reason)
    return request.task.backend.record_quietly(
        request.id, reason, states.FAILURE, request_context(request), holder_only=True
    )


class LostRunRecord(Middleware):
    """The middleware that records it (from SQSRequest.on_failure, before the hand-back)."""

    def run_lost(self, request: Any, exc: BaseException) -> None:
        record_if_final_loss(request, exc)
