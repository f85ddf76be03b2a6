"""Visibility heartbeat: a job that runs longer than the queue's visibility timeout runs once.

SQS hides a received message for the queue's visibility timeout and then
delivers it again, to any worker, whether or not the first is still working
on it. While this worker holds a message it has not acknowledged (a task
running, waiting for a pool process, or waiting for its ETA/countdown), this
middleware pushes the message's visibility forward with
ChangeMessageVisibilityBatch (one call per 10 held messages), well before it
lapses. Once the request is acknowledged or handed back, it is no longer held
and never extended again.

ETA/countdown tasks are held and extended the same way, up to SQS's ceiling:
a message's visibility can reach at most 12 hours after it was received.
A message whose ETA lies beyond that cannot be held. Normally it never gets here: a
job due more than 15 minutes ahead is deferred to a one-time EventBridge Scheduler
schedule before Celery sees it (tasks.worker.deferral). Where deferral cannot work (no
scheduler role configured; arguments in S3 that expire before the ETA) it is refused when
received: its job is recorded FAILURE (`EtaBeyondVisibilityLimit`, saying why) and the
message is acknowledged.

`keeping()` tells the health check's busy pulse (tasks.worker.liveness) whether the
heartbeat still holds the messages: it turns False once a beat went unconfirmed by
SQS (failed, or no answer) and the next beat has not been confirmed either within
ANSWER_GRACE of being sent: the held messages are about to be delivered again.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from celery import states

from tasks.celery_private import (
    held_requests,
    mark_revoked,
    request_context,
    request_message,
)
from tasks.ops import clients
from tasks.ops.clients import sqs_client
from tasks.ops.settings import Settings
from tasks.worker.middleware import Middleware
from tasks.worker.sqs_io import sqs_io
from tasks.worker.sqs_messages import sqs_location

log = logging.getLogger(__name__)

# SQS: a message's visibility can be extended to at most 12 h after its receipt.
SQS_MAX_VISIBILITY = 12 * 3600
# Refuse ETAs this close to the ceiling: the job needs time to run once due.
ETA_MARGIN = 3600
# A beat's call is answered (or has failed) within this: tasks.ops.clients.QUICK_CONFIG makes
# two attempts of at most 1 s to connect and 3 s to read, with a short backoff between them.
ANSWER_GRACE = 10.0


class EtaBeyondVisibilityLimit(Exception):
    """A countdown/ETA further away than SQS lets a worker hold a message."""


def message_location(request) -> tuple[str, str] | None:
    """(queue URL, receipt handle) of a request's SQS message, if it still has one."""
    return sqs_location(request_message(request))


def heartbeat_interval(visibility_timeout: int) -> float:
    """Beat three times per timeout, so two beats in a row may fail before it lapses."""
    return max(1.0, min(visibility_timeout / 3, 300.0))


def queue_visibility_timeout(settings: Settings, configured: int) -> int:
    """The queue's own VisibilityTimeout when SQS tells us, else the configured one.

    Beating on the wrong period would let messages lapse, so a queue set up
    with a shorter timeout than JOBS_VISIBILITY_TIMEOUT says still runs once.
    """
    try:
        attributes = sqs_client(settings, quick=True).get_queue_attributes(
            QueueUrl=clients.queue_url(settings), AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        actual = int(attributes["VisibilityTimeout"])
    except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
        log.warning(
            "could not read the queue's visibility timeout (%s); assuming %d s", exc, configured
        )
        return configured
    if actual != configured:
        log.warning(
            "the queue's visibility timeout is %d s, not the configured %d s; extending by %d s",
            actual,
            configured,
            actual,
        )
    return actual


class VisibilityHeartbeat(Middleware):
    """Extends every held message, one ChangeMessageVisibilityBatch per 10, each beat."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = self.settings.visibility_timeout
        self.interval = heartbeat_interval(self.timeout)
        self.received_at: dict[str, float] = {}  # receipt handle -> when first seen
        self.tref = None
        # When each beat SQS has not confirmed was sent (monotonic), oldest first: the first
        # of the latest run of misses, then those in flight. Written from sqs_io's thread too.
        self._unconfirmed: list[float] = []
        self._lock = threading.Lock()

    def consumer_started(self, consumer) -> None:
        # Off only for tests that show what happens without it.
        if not self.settings.visibility_heartbeat:
            log.warning("visibility heartbeat is off: long jobs will be delivered again")
            return
        self.timeout = queue_visibility_timeout(self.settings, self.timeout)
        self.interval = heartbeat_interval(self.timeout)
        if self.tref is None:
            self.tref = consumer.timer.call_repeatedly(self.interval, self.beat)

    def consumer_stopping(self, consumer) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def job_received(self, request) -> None:
        refuse_eta_beyond_limit(request)

    def entries(self) -> list[tuple[str, str, int]]:
        """(queue url, receipt, seconds) for every message this worker holds unacknowledged."""
        now = time.monotonic()
        held = {}
        for request in held_requests():
            # Acknowledged (deleted) or handed back (kombu drops sqs_message then).
            if request.acknowledged:
                continue
            where = message_location(request)
            if where is not None:
                held[where[1]] = where[0]
        self.received_at = {h: self.received_at.get(h, now) for h in held}
        entries = []
        for receipt, queue_url in held.items():
            # Never ask past the 12-hour ceiling: SQS would refuse the whole call.
            room = SQS_MAX_VISIBILITY - (now - self.received_at[receipt]) - 60
            timeout = int(min(self.timeout, room))
            if timeout > 0:
                entries.append((queue_url, receipt, timeout))
        return entries

    def beat(self) -> None:
        entries = self.entries()
        if not entries:
            with self._lock:
                self._unconfirmed.clear()  # nothing held, nothing to keep
            return
        sent = time.monotonic()
        with self._lock:
            self._unconfirmed.append(sent)
        # Off the event loop.
        future = sqs_io(self.settings).extend(entries)
        future.add_done_callback(lambda f: self._answered(sent, f))

    def _answered(self, sent: float, future: Future) -> None:
        """On sqs_io's thread: a beat's call ended; SQS kept our messages if it accepted any."""
        kept = future.exception() is None and bool(future.result())
        with self._lock:
            if kept:
                # Calls end in order: every earlier beat has ended, and this one supersedes it.
                self._unconfirmed = [t for t in self._unconfirmed if t > sent]
            elif sent in self._unconfirmed and self._unconfirmed[0] < sent:
                # An older miss is already counted: the first miss in a row is what ages.
                self._unconfirmed.remove(sent)

    def keeping(self, now: float | None = None) -> bool:
        """False once two beats in a row went unconfirmed (the second given ANSWER_GRACE)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            oldest = self._unconfirmed[0] if self._unconfirmed else None
        return oldest is None or now - oldest <= self.interval + ANSWER_GRACE


def eta_delay(request) -> float | None:
    eta = getattr(request, "eta", None)
    if not eta:
        return None
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            return None
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    return (eta - datetime.now(UTC)).total_seconds()


def refuse_eta_beyond_limit(request) -> None:
    delay = eta_delay(request)
    if delay is None or delay <= SQS_MAX_VISIBILITY - ETA_MARGIN:
        return
    reason = EtaBeyondVisibilityLimit(
        f"the job is due in {delay / 3600:.1f} h, but a worker can hold an SQS message for "
        f"at most {(SQS_MAX_VISIBILITY - ETA_MARGIN) / 3600:.0f} h before it runs; "
        "use a countdown/ETA within that, or schedule the job outside the queue"
    )
    log.error("refused job %s: %s", request.id, reason)
    try:
        request.task.backend.record_quietly(
            request.id, reason, states.FAILURE, request_context(request), holder_only=True
        )
    finally:
        # Revoked: the ETA timer drops it when due; acknowledged: SQS forgets it.
        mark_revoked(request.id)
        request.acknowledge()
