"""The hooks a worker middleware may implement, and `Periodic`, a middleware with a beat.

Celery spreads a worker's extension points over bootsteps, signals and subclasses of its
Consumer and Request. Here every cross-cutting concern (the message gate, the claim check,
health, visibility heartbeat, shutdown deadline, scale-in protection, revoke with
terminate, the lost-run record, completion callbacks...) is a `Middleware` that overrides
the hooks it needs; the app's list (tasks.worker.middleware.stack) calls them in order.

Unless a hook says otherwise it runs in the consumer's (main) process, on its event loop,
so it must not block: hand slow work to a thread (as tasks.worker.sqs_io does). A hook
that raises is logged and never stops the worker, except the two that decide about a
message (`screen_message`, `message_body`): there an exception rejects the message.

This module imports no concrete middleware: tasks.worker.default_middleware lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """Why a message may not reach Celery; `permanent` if no worker could ever run it."""

    reason: str
    permanent: bool
    job_id: str | None
    task: str | None


@dataclass(frozen=True)
class Taken:
    """A screen's answer for a message the middleware took over: Celery never sees it, and the
    middleware itself acknowledges it or gives it back to SQS (tasks.worker.deferral)."""

    job_id: str
    why: str


@dataclass(frozen=True)
class Rejection:
    """A message the worker refused, as the `message_rejected` hook sees it: the verdict,
    the message's receive count, and whether SQS will not deliver it again (`final`)."""

    verdict: Verdict
    receive_count: int | None
    final: bool


class Middleware:
    """Override the hooks a concern needs; the others do nothing."""

    # --- the consumer -------------------------------------------------------------------
    def consumer_started(self, consumer: Any) -> None:
        """The consumer is connected and about to consume (again, after a reconnect)."""

    def consumer_stopping(self, consumer: Any) -> None:
        """The consumer stops: shutdown, or a lost connection it will restart after."""

    def shutdown_requested(self, how: str) -> None:
        """SIGTERM/SIGINT ("Warm") or SIGQUIT ("Cold"); called from the signal handler."""

    # --- a message, before Celery has it --------------------------------------------------
    def screen_message(self, consumer: Any, message: Any) -> Verdict | Taken | None:
        """A verdict to refuse this kombu message before Celery parses it, `Taken` if this
        middleware took it over, or None to pass it on. The first answer wins; a hook that
        raises refuses the message too."""
        return None

    def message_body(self, message: Any, headers: dict[str, Any]) -> tuple | None:
        """`(args, kwargs, embed)` for Celery to run the job with instead of the message's
        own body, or None. The first answer wins; raising rejects the message with the
        exception as the reason."""
        return None

    def message_rejected(self, consumer: Any, message: Any, rejection: Rejection) -> None:
        """The worker refused a message (a verdict, or Celery could not take it); the
        message is then left to SQS's redrive policy."""

    # --- a job's run ------------------------------------------------------------------
    def job_received(self, request: Any) -> None:
        """A job's message passed the gate and was handed to Celery (maybe with an ETA)."""

    def job_started(self, request: Any) -> None:
        """A pool process accepted the job."""

    def run_failed(self, request: Any, exc: BaseException) -> None:
        """The job raised, or hit a time limit (before Celery acknowledges its message)."""

    def run_lost(self, request: Any, exc: BaseException) -> None:
        """The pool process running the job died (WorkerLostError) or was killed by a
        revoke with terminate (Terminated), before Celery hands back or acks its message."""

    def run_ended(self, task: Any, state: str) -> None:
        """In the pool process that ran the job (Celery's task_postrun): the job's state was
        written and its message is not acknowledged yet. Not called for eager calls."""

    def job_finished(self, request: Any, outcome: str) -> None:
        """The job's message was acknowledged ("ack"), rejected ("reject") or handed
        back ("requeue")."""


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
