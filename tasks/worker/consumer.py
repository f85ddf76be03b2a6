"""The worker's consumer: the middleware's message hooks in front of Celery's task handler.

Every message is screened by the middleware first (tasks.worker.gate's MessageGate). One
that is refused, or that Celery's handler raises on, is rejected: the `message_rejected`
hook runs (tasks.worker.rejection_record: the job record says why, through the state
machine: RETRY while SQS will deliver it again, FAILURE on the last receive or when no
worker could ever run it), the message is hidden for a few seconds so it reaches the
dead-letter queue quickly, and the worker goes on with the next message.
"""

from __future__ import annotations

import logging

from vine import promise

from tasks import celery_private
from tasks.ops.settings import Settings
from tasks.worker.celery_hooks import Middlewares
from tasks.worker.default_middleware import of
from tasks.worker.gate import job_identity
from tasks.worker.middleware.base import Rejection, Taken, Verdict
from tasks.worker.sqs_io import sqs_io
from tasks.worker.sqs_messages import receive_count, sqs_location

log = logging.getLogger(__name__)


class SafeConsumer(celery_private.Consumer):
    def __init__(self, *args, app=None, **kwargs):
        # Celery's documented extension point: the blueprint reads app.steps in __init__.
        app.steps["consumer"].add(Middlewares)
        self.middleware = of(app)  # made here, before the pool forks: its processes share it
        self.settings = Settings.of(app)
        self.max_receive_count = self.settings.max_receive_count
        super().__init__(*args, app=app, **kwargs)

    def create_task_handler(self, promise=promise):
        celery_handler = super().create_task_handler(promise)

        def on_task_received(message):
            verdict = self.middleware.screen(self, message)
            if isinstance(verdict, Taken):
                return None  # a middleware acknowledges it or gives it back (deferral)
            if verdict is not None:
                return self.reject(message, verdict)
            try:
                return celery_handler(message)
            except Exception as exc:  # anything else Celery would die of
                job_id, task = job_identity(message)
                reason = f"{type(exc).__name__}: {str(exc)[:500]}"
                return self.reject(message, Verdict(reason, False, job_id, task))

        return on_task_received

    def reject(self, message, verdict: Verdict) -> None:
        """Tell the middleware why, then leave the message to SQS's redrive policy (-> DLQ)."""
        count = receive_count(message)
        final = verdict.permanent or (count is not None and count >= self.max_receive_count)
        log.error(
            "rejected message %s (receive %s%s): %s",
            verdict.job_id or "<no id>",
            count,
            ", final" if final else "",
            verdict.reason,
        )
        self.middleware.dispatch(
            "message_rejected", self, message, Rejection(verdict, count, final)
        )
        where = sqs_location(message)
        if where is not None:
            # Retrying a malformed message cannot help; come back soon so it reaches
            # the DLQ in seconds, not after maxReceiveCount visibility timeouts.
            sqs_io(self.settings).change_visibility(*where, timeout=min(max(count or 1, 1), 10))
        try:
            # With a redrive policy kombu leaves the message in SQS, which moves it
            # to the DLQ after maxReceiveCount; either way the prefetch slot is freed.
            message.reject(requeue=False)
        except Exception:
            log.exception("could not reject message %s", verdict.job_id)
