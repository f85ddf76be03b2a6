"""The worker-side request: carries SQS delivery facts into the task's context."""

from __future__ import annotations

from celery.worker.request import Request

from tasks.worker_lost import record_if_final_loss


def receive_count(message) -> int | None:
    """SQS's ApproximateReceiveCount of a kombu message, if the transport gave it."""
    try:
        raw = message.delivery_info["sqs_message"]["Attributes"]["ApproximateReceiveCount"]
    except (AttributeError, KeyError, TypeError):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


class SQSRequest(Request):
    def __init__(self, message, *args, **kwargs):
        super().__init__(message, *args, **kwargs)
        # Becomes `task.request.delivery_count` in the pool process, where the
        # backend records it as the job's `attempts`.
        self._request_dict["delivery_count"] = receive_count(message)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        # Still handed back as Celery does; on the last delivery the record says why.
        record_if_final_loss(self, exc_info.exception)
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)
