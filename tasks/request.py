"""The worker-side request: carries SQS delivery facts into the task's context."""

from __future__ import annotations

from celery.worker.request import Request


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
