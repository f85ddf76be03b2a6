"""The worker's consumer: the message gate in front of Celery's task handler.

Every message passes tasks.worker.gate first. One that fails, or that Celery's
handler raises on, is rejected: its job record says why (through the state
machine: RETRY while SQS will deliver it again, FAILURE on the last receive or
when no worker could ever run it), it is hidden for a few seconds so it reaches
the dead-letter queue quickly, and the worker goes on with the next message.
"""

from __future__ import annotations

import logging

from vine import promise

from tasks.ops.settings import Settings
from tasks.worker import celery_private, gate
from tasks.worker.sqs_io import sqs_io
from tasks.worker.sqs_messages import receive_count, sqs_location

log = logging.getLogger(__name__)


class SafeConsumer(celery_private.Consumer):
    def __init__(self, *args, app=None, **kwargs):
        # Celery's documented extension point: the blueprint reads app.steps in __init__.
        from tasks.worker.middleware import Middlewares

        app.steps["consumer"].add(Middlewares)
        self.max_receive_count = Settings.from_env().max_receive_count
        super().__init__(*args, app=app, **kwargs)

    def create_task_handler(self, promise=promise):
        celery_handler = super().create_task_handler(promise)

        def on_task_received(message):
            try:
                verdict = gate.check(message, self.app.tasks)
            except Exception as exc:  # the gate itself must never stop the worker
                log.exception("the message gate failed on a message")
                verdict = gate.Verdict(f"unreadable message: {type(exc).__name__}", True,
                                       None, None)
            if verdict is not None:
                return self.reject(message, verdict)
            try:
                return celery_handler(message)
            except Exception as exc:  # anything else Celery would die of
                job_id, task = gate.job_identity(message)
                reason = f"{type(exc).__name__}: {str(exc)[:500]}"
                return self.reject(message, gate.Verdict(reason, False, job_id, task))

        return on_task_received

    def reject(self, message, verdict: gate.Verdict) -> None:
        """Record why, then leave the message to SQS's redrive policy (-> DLQ)."""
        count = receive_count(message)
        final = verdict.permanent or (count is not None and count >= self.max_receive_count)
        log.error("rejected message %s (receive %s%s): %s", verdict.job_id or "<no id>",
                  count, ", final" if final else "", verdict.reason)
        if verdict.job_id is not None:
            try:
                self.app.backend.records.reject_message(
                    verdict.job_id, verdict.reason, final=final,
                    facts={"task": verdict.task, "attempts": count, "worker": self.hostname})
            except Exception:
                log.exception("could not record the rejection of job %s", verdict.job_id)
        where = sqs_location(message)
        if where is not None:
            # Retrying a malformed message cannot help; come back soon so it reaches
            # the DLQ in seconds, not after maxReceiveCount visibility timeouts.
            sqs_io().change_visibility(*where, timeout=min(max(count or 1, 1), 10))
        try:
            # With a redrive policy kombu leaves the message in SQS, which moves it
            # to the DLQ after maxReceiveCount; either way the prefetch slot is freed.
            message.reject(requeue=False)
        except Exception:
            log.exception("could not reject message %s", verdict.job_id)
