"""The gate as a middleware: every message checked before Celery parses it."""

from __future__ import annotations

from typing import Any

from tasks.worker.gate.check import check
from tasks.worker.middleware.base import Middleware, Verdict


class MessageGate(Middleware):
    """Refuses a message that breaks Celery protocol v2 (tasks.worker.gate.protocol) or
    names a task this worker does not have; the consumer then rejects it."""

    def screen_message(self, consumer: Any, message: Any) -> Verdict | None:
        return check(message, consumer.app.tasks)
