"""The worker's consumer, hardened against messages that would stop stock Celery."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from celery import states
from celery.worker.consumer import Consumer
from vine import promise

from tasks.aws import sqs_client
from tasks.errors import PoisonMessage
from tasks.poison import message_problem, message_task_id
from tasks.request import receive_count

log = logging.getLogger(__name__)


class SafeConsumer(Consumer):
    def create_task_handler(self, promise=promise):
        celery_handler = super().create_task_handler(promise)

        def on_task_received(message):
            problem = message_problem(message, self.app.tasks)
            if problem is not None:
                return self.reject_poison(message, problem)
            try:
                return celery_handler(message)
            except Exception as exc:  # anything else Celery would die of
                return self.reject_poison(message, f"{type(exc).__name__}: {exc}")

        return on_task_received

    def reject_poison(self, message, reason: str) -> None:
        """Record why, then leave the message to SQS's redrive policy (-> DLQ)."""
        task_id = message_task_id(message)
        count = receive_count(message)
        log.error("rejected message %s (receive %s): %s", task_id or "<no id>", count, reason)
        if task_id is not None:
            self._record_failure(message, task_id, reason, count)
        self._hide_briefly(message, count)
        try:
            # With a redrive policy kombu leaves the message in SQS, which moves it
            # to the DLQ after maxReceiveCount; either way the prefetch slot is freed.
            message.reject(requeue=False)
        except Exception:
            log.exception("could not reject message %s", task_id)

    def _record_failure(self, message, task_id: str, reason: str, count: int | None) -> None:
        backend = self.app.backend
        headers = message.headers if isinstance(message.headers, dict) else {}

        name = headers.get("task")
        facts = SimpleNamespace(  # what the backend reads off a request
            task=name if isinstance(name, str) else None,
            delivery_count=count,
            hostname=self.hostname,
        )
        try:
            backend.store_result(task_id, PoisonMessage(reason), states.FAILURE, request=facts)
        except Exception:
            log.exception("could not record the failure of job %s", task_id)

    def _hide_briefly(self, message, count: int | None) -> None:
        # Retrying a malformed message cannot help; come back soon so it reaches
        # the DLQ in seconds, not after maxReceiveCount visibility timeouts.
        info = getattr(message, "delivery_info", None) or {}
        try:
            receipt = info["sqs_message"]["ReceiptHandle"]
            queue_url = info["sqs_queue"]
        except (KeyError, TypeError):
            return
        delay = min(max(count or 1, 1), 10)
        try:
            from tasks.settings import Settings

            sqs_client(Settings.from_env()).change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
            )
        except Exception:
            log.warning("could not shorten the visibility of a rejected message", exc_info=True)
