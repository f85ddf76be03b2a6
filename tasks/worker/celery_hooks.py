"""Where Celery calls the middleware: a consumer step, and three of Celery's signals.

The consumer step (`Middlewares`, added by tasks.worker.consumer.SafeConsumer) runs the
consumer hooks; task_received runs `job_received`; worker_shutting_down runs
`shutdown_requested`; task_postrun runs `run_ended` in the pool process. Our Consumer and
Request subclasses (tasks.worker.consumer, tasks.worker.request) call the message and
run hooks themselves.
"""

from __future__ import annotations

import weakref
from typing import Any

from celery import bootsteps, signals

from tasks.celery_private import TASKS_STEP
from tasks.worker.default_middleware import of
from tasks.worker.middleware.stack import MiddlewareStack, built

# The lists of the consumers built in this process: worker_shutting_down names no app.
_serving: weakref.WeakSet[MiddlewareStack] = weakref.WeakSet()


class Middlewares(bootsteps.StartStopStep):
    """The consumer step that runs the middleware's consumer hooks."""

    requires = {TASKS_STEP}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.stack = of(parent.app)
        _serving.add(self.stack)

    def start(self, parent: Any) -> None:
        self.stack.dispatch("consumer_started", parent)

    def stop(self, parent: Any) -> None:
        self.stack.dispatch("consumer_stopping", parent)

    def shutdown(self, parent: Any) -> None:
        self.stack.dispatch("consumer_stopping", parent)


@signals.task_received.connect(weak=False, dispatch_uid="tasks.worker.middleware.received")
def _job_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    stack = built(getattr(sender, "app", None) or getattr(request, "app", None))
    if stack is not None:
        stack.dispatch("job_received", request)


@signals.worker_shutting_down.connect(weak=False, dispatch_uid="tasks.worker.middleware.shutdown")
def _shutdown_requested(how: str | None = None, **_: Any) -> None:
    for stack in list(_serving):
        stack.dispatch("shutdown_requested", how or "")


@signals.task_postrun.connect(weak=False, dispatch_uid="tasks.worker.middleware.postrun")
def _run_ended(task: Any = None, state: str | None = None, **_: Any) -> None:
    if task is None or getattr(getattr(task, "request", None), "is_eager", False):
        return
    stack = built(task.app)
    if stack is not None:
        stack.dispatch("run_ended", task, state)
