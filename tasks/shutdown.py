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
  tasks.sqs_channel releases it at once (visibility 0).

Enabled by the consumer step registered in tasks/bootsteps.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from celery import bootsteps, signals, states
from celery.worker import state as worker_state

log = logging.getLogger(__name__)

EXIT_CUT_OFF = 1


class ShutdownCutOff(Exception):
    """Recorded (state RETRY) on a job that a shutdown deadline interrupted."""


def message_location(request) -> tuple[str, str] | None:
    """(queue URL, receipt handle) of a request's SQS message, if it still has one."""
    message = getattr(request, "_message", None) or getattr(request, "message", None)
    info = getattr(message, "delivery_info", None) or {}
    try:
        return info["sqs_queue"], info["sqs_message"]["ReceiptHandle"]
    except (KeyError, TypeError):
        return None


def held_requests() -> list:
    """Every request this worker holds (reserved, scheduled or running), copied safely."""
    for _ in range(5):
        try:
            return list(worker_state.requests.values())
        except RuntimeError:  # changed size while copied from another thread
            time.sleep(0.01)
    return []


class ShutdownDeadline(bootsteps.StartStopStep):
    """Bounds a warm shutdown by `worker_soft_shutdown_timeout` seconds after SIGTERM."""

    requires = {"celery.worker.consumer.tasks:Tasks"}
    current: ShutdownDeadline | None = None

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.consumer = parent
        self.deadline = float(parent.app.conf.worker_soft_shutdown_timeout or 0)
        self.timer: threading.Timer | None = None

    def start(self, parent) -> None:
        ShutdownDeadline.current = self

    def stop(self, parent) -> None:
        # The consumer stops (and restarts) on a lost connection too; only the
        # SIGTERM handler arms the deadline, so nothing to undo here.
        pass

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
        log.error("shutdown deadline of %.0f s reached; returning %d job(s) to the queue",
                  self.deadline, len(requests))
        self._kill_pool()
        for request in requests:
            if request.time_start:
                self._record(request)
            self._release(request)
        logging.shutdown()
        os._exit(EXIT_CUT_OFF)

    def _kill_pool(self) -> None:
        # Children first, so none of them writes a result after the record says
        # the job was returned to the queue.
        pool = getattr(getattr(self.consumer, "pool", None), "_pool", None)
        for process in list(getattr(pool, "_pool", None) or []):
            with contextlib.suppress(OSError, TypeError):
                os.kill(process.pid, signal.SIGKILL)

    def _record(self, request) -> None:
        reason = ShutdownCutOff(
            f"the worker shut down and the job did not finish within {self.deadline:.0f} s; "
            "it was returned to the queue and will run again")
        try:
            request.task.backend.store_result(
                request.id, reason, states.RETRY, request=request._context)
        except Exception:
            log.exception("could not record that job %s was returned to the queue", request.id)

    def _release(self, request) -> None:
        where = message_location(request)
        if where is None:
            return
        queue_url, receipt = where
        from tasks.visibility import sqs_for_heartbeats

        try:
            sqs_for_heartbeats().change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not release job %s at once (%s); SQS redelivers it after its "
                        "visibility timeout", request.id, exc)


@signals.worker_shutting_down.connect
def _arm_deadline(sig=None, how=None, **kwargs) -> None:
    # Sent from the main process's signal handler; a cold shutdown has its own limit.
    if how == "Warm" and ShutdownDeadline.current is not None:
        ShutdownDeadline.current.arm()
