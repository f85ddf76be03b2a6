"""One hook surface for the worker's cross-cutting concerns.

Celery spreads a worker's extension points over bootsteps, signals and
subclasses of its Consumer and Request. Here each concern (health, visibility
heartbeat, shutdown deadline, scale-in protection, revoke with terminate) is a
`Middleware` with no-op hooks, and one consumer step (`Middlewares`) plus our Request
class call them: a new concern is one class added to `MIDDLEWARE`, not a step, a signal
handler and an override.

Every hook runs in the consumer's (main) process, on its event loop unless it
says otherwise, so a hook must not block: hand slow work to a thread (as
tasks.worker.sqs_io does). A hook that raises is logged and never stops the
worker.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps, signals

log = logging.getLogger(__name__)


class Middleware:
    """Override the hooks a concern needs; the others do nothing."""

    def consumer_started(self, consumer: Any) -> None:
        """The consumer is connected and about to consume (again, after a reconnect)."""

    def consumer_stopping(self, consumer: Any) -> None:
        """The consumer stops: shutdown, or a lost connection it will restart after."""

    def job_received(self, request: Any) -> None:
        """A job's message passed the gate and was handed to Celery (maybe with an ETA)."""

    def job_started(self, request: Any) -> None:
        """A pool process accepted the job."""

    def job_finished(self, request: Any, outcome: str) -> None:
        """The job's message was acknowledged ("ack"), rejected ("reject") or handed
        back ("requeue")."""

    def shutdown_requested(self, how: str) -> None:
        """SIGTERM/SIGINT ("Warm") or SIGQUIT ("Cold"); called from the signal handler."""


_active: list[Middleware] = []


class Periodic(Middleware):
    """A middleware with a beat: `tick` every `interval` seconds on the consumer's timer (the
    event loop), from consumer start to consumer stop. Slow work belongs on a thread."""

    interval: float = 0.0
    consumer: Any = None
    tref: Any = None

    def consumer_started(self, consumer: Any) -> None:
        self.consumer = consumer
        if self.tref is None:
            self.tref = consumer.timer.call_repeatedly(self.interval, self.tick)

    def consumer_stopping(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def tick(self) -> None:
        raise NotImplementedError


def active() -> list[Middleware]:
    return list(_active)


def dispatch(hook: str, *args: Any) -> None:
    for middleware in _active:
        try:
            getattr(middleware, hook)(*args)
        except Exception:
            log.exception("middleware %s failed in %s", type(middleware).__name__, hook)


def default_middleware() -> list[Middleware]:
    from tasks.worker.lease_heartbeat import RunLeaseHeartbeat
    from tasks.worker.liveness import ProgressMarks
    from tasks.worker.metrics import JobMetrics
    from tasks.worker.protection import ScaleInProtection
    from tasks.worker.revocation import RevokedJobTerminator
    from tasks.worker.shutdown import ShutdownDeadline
    from tasks.worker.visibility import VisibilityHeartbeat

    return [ProgressMarks(), VisibilityHeartbeat(), ShutdownDeadline(), ScaleInProtection(),
            JobMetrics(), RevokedJobTerminator(), RunLeaseHeartbeat()]


class Middlewares(bootsteps.StartStopStep):
    """The consumer step that runs the middleware's consumer hooks."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        if not _active:
            _active.extend(default_middleware())

    def start(self, parent) -> None:
        dispatch("consumer_started", parent)

    def stop(self, parent) -> None:
        dispatch("consumer_stopping", parent)

    def shutdown(self, parent) -> None:
        dispatch("consumer_stopping", parent)


@signals.task_received.connect
def _job_received(request=None, **kwargs) -> None:
    dispatch("job_received", request)


@signals.worker_shutting_down.connect
def _shutdown_requested(sig=None, how=None, **kwargs) -> None:
    dispatch("shutdown_requested", how or "")
