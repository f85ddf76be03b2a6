"""Warm shutdown within a deadline, and messages handed back to SQS at once.

SIGTERM (ECS scale-in, a deploy) is Celery's warm shutdown: stop taking
messages, let running tasks finish. Two things stock Celery 5.7 on SQS gets
wrong for us:

* A warm shutdown waits for running tasks with no limit, but ECS kills the
  container `stopTimeout` seconds (120 at most on Fargate) after SIGTERM.
  Celery's own limit, `worker_soft_shutdown_timeout`, applies only to a cold
  shutdown (SIGQUIT, a second Ctrl-C, or SIGTERM when REMAP_SIGTERM=SIGQUIT),
  and it sleeps the whole timeout in the signal handler, even when the tasks
  finish sooner; the event loop is stopped meanwhile, so a task that finishes
  during the wait is not acknowledged before the cancel that follows, and
  runs again. `ShutdownDeadline` instead lets the warm shutdown run and, if it
  is still going `worker_soft_shutdown_timeout` seconds after SIGTERM, cuts
  it off: each unfinished job's record says it was returned to the queue,
  its message becomes visible again at once, and the process exits before
  ECS's SIGKILL can land in the middle of a write.
* kombu hands an unacknowledged message back (shutdown, or a pool process
  that died) by hiding it for `wait_time_seconds` instead of releasing it:
  tasks.worker.channel releases it at once (visibility 0).

A middleware (tasks.worker.middleware).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from celery import states

from tasks.celery_private import (
    held_requests,
    pool_processes,
    request_context,
    request_message,
)
from tasks.ops.settings import Settings
from tasks.worker.middleware import Middleware
from tasks.worker.sqs_io import sqs_io
from tasks.worker.sqs_messages import sqs_location

log = logging.getLogger(__name__)

EXIT_CUT_OFF = 1


class ShutdownCutOff(Exception):
    """Recorded (state RETRY) on a job that a shutdown deadline interrupted."""


class ShutdownDeadline(Middleware):
    """Bounds a warm shutdown by `worker_soft_shutdown_timeout` seconds after SIGTERM."""

    def __init__(self) -> None:
        self.consumer = None
        self.deadline = 0.0
        self.timer: threading.Timer | None = None

    def consumer_started(self, consumer) -> None:
        self.consumer = consumer
        self.deadline = float(consumer.app.conf.worker_soft_shutdown_timeout or 0)

    def shutdown_requested(self, how: str) -> None:
        # Sent from the main process's signal handler; a cold shutdown has its own limit.
        if how == "Warm":
            self.arm()

    def arm(self) -> None:
        if self.timer is not None or self.deadline <= 0:
            return
        log.warning("warm shutdown: running jobs have %.0f s to finish", self.deadline)
        self.timer = threading.Timer(self.deadline, self.cut_off)
        self.timer.daemon = True
        self.timer.start()

    def cut_off(self) -> None:
        """Runs on the timer thread: hand every unfinished job back, then exit."""
        requests = [r for r in held_requests() if not r.acknowledged]
        log.error(
            "shutdown deadline of %.0f s reached; returning %d job(s) to the queue",
            self.deadline,
            len(requests),
        )
        self._kill_pool()
        for request in requests:
            if request.time_start:
                self._record(request)
        io = sqs_io(Settings.of(self.consumer.app))
        io.hand_back([where for where in map(message_location, requests) if where], wait=True)
        io.flush()  # what finished before the cut-off is acknowledged, not run again
        logging.shutdown()
        os._exit(EXIT_CUT_OFF)

    def _kill_pool(self) -> None:
        # Children first, so none of them writes a result after the record says
        # the job was returned to the queue.
        for process in pool_processes(self.consumer):
            with contextlib.suppress(OSError, TypeError):
                os.kill(process.pid, signal.SIGKILL)

    def _record(self, request) -> None:
        reason = ShutdownCutOff(
            f"the worker shut down and the job did not finish within {self.deadline:.0f} s; "
            "it was returned to the queue and will run again"
        )
        request.task.backend.record_quietly(
            request.id, reason, states.RETRY, request_context(request)
        )


def message_location(request) -> tuple[str, str] | None:
    """(queue URL, receipt handle) of a request's SQS message, if it still has one."""
    return sqs_location(request_message(request))
