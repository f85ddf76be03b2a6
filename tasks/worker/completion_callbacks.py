"""Completion callbacks (tasks.callbacks) as a middleware: when to enqueue the delivery.

`run_ended` runs in the pool process, after the job's terminal write and before its
message's ack, so a worker that dies in between runs the message again and enqueues then;
`run_lost` covers a pool process lost where Celery acknowledges without a rerun.
"""

from __future__ import annotations

from typing import Any

from tasks.callbacks import enqueue_if_ended
from tasks.callbacks.lost_run import deliver_after_lost_run
from tasks.worker.middleware.base import Middleware


class CompletionCallbacks(Middleware):
    def run_ended(self, task: Any, state: str) -> None:
        enqueue_if_ended(task, state)

    def run_lost(self, request: Any, exc: BaseException) -> None:
        deliver_after_lost_run(request, exc)
