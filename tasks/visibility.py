"""Visibility heartbeat: a job that runs longer than the queue's visibility timeout runs once.

SQS hides a received message for the queue's visibility timeout and then
delivers it again, to any worker, whether or not the first is still working
on it. While this worker holds a message it has not acknowledged (a task
running, waiting for a pool process, or waiting for its ETA/countdown), this
consumer step pushes the message's visibility forward with
ChangeMessageVisibility, well before it lapses. Once the request is
acknowledged or handed back, it is no longer held and never extended again.

ETA/countdown tasks are held and extended the same way, up to SQS's ceiling:
a message's visibility can reach at most 12 hours after it was received.
A message whose ETA lies beyond that cannot be held, so it is refused when
received: its job is recorded FAILURE (`EtaBeyondVisibilityLimit`, saying
why) and the message is acknowledged. Schedule such work outside the queue.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from celery import bootsteps, signals, states

from tasks.settings import Settings
from tasks.shutdown import held_requests, message_location

log = logging.getLogger(__name__)

# SQS: a message's visibility can be extended to at most 12 h after its receipt.
SQS_MAX_VISIBILITY = 12 * 3600
# Refuse ETAs this close to the ceiling: the job needs time to run once due.
ETA_MARGIN = 3600

# The heartbeat runs in the consumer's event loop: fail fast rather than stall
# it; the next beat (a third of the timeout later) tries again.
HEARTBEAT_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2},
    connect_timeout=1,
    read_timeout=3,
)
GONE_CODES = ("ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue",
              "AWS.SimpleQueueService.MessageNotInflight")


class EtaBeyondVisibilityLimit(Exception):
    """A countdown/ETA further away than SQS lets a worker hold a message."""


@functools.lru_cache(maxsize=4)
def _client(region: str, endpoint: str | None, pid: int):
    return boto3.session.Session().client(
        "sqs", region_name=region, endpoint_url=endpoint, config=HEARTBEAT_CLIENT_CONFIG)


def sqs_for_heartbeats():
    settings = Settings.from_env()
    return _client(settings.region, settings.sqs_endpoint, os.getpid())


def heartbeat_interval(visibility_timeout: int) -> float:
    """Beat three times per timeout, so two beats in a row may fail before it lapses."""
    return max(1.0, min(visibility_timeout / 3, 300.0))


def queue_visibility_timeout(configured: int) -> int:
    """The queue's own VisibilityTimeout when SQS tells us, else the configured one.

    Beating on the wrong period would let messages lapse, so a queue set up
    with a shorter timeout than JOBS_VISIBILITY_TIMEOUT says still runs once.
    """
    settings = Settings.from_env()
    try:
        attributes = sqs_for_heartbeats().get_queue_attributes(
            QueueUrl=settings.resolved_queue_url(), AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        actual = int(attributes["VisibilityTimeout"])
    except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
        log.warning("could not read the queue's visibility timeout (%s); assuming %d s",
                    exc, configured)
        return configured
    if actual != configured:
        log.warning("the queue's visibility timeout is %d s, not the configured %d s; "
                    "extending by %d s", actual, configured, actual)
    return actual


class VisibilityHeartbeat(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timeout = Settings.from_env().visibility_timeout
        self.interval = heartbeat_interval(self.timeout)
        self.received_at: dict[str, float] = {}  # receipt handle -> when first seen
        self.tref = None

    def start(self, parent) -> None:
        # Off only for tests that show what happens without it.
        if os.environ.get("JOBS_VISIBILITY_HEARTBEAT", "on") == "off":
            log.warning("visibility heartbeat is off: long jobs will be delivered again")
            return
        self.timeout = queue_visibility_timeout(self.timeout)
        self.interval = heartbeat_interval(self.timeout)
        self.tref = parent.timer.call_repeatedly(self.interval, self.beat)

    def stop(self, parent) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def beat(self) -> None:
        now = time.monotonic()
        held = {}
        for request in held_requests():
            # Acknowledged (deleted) or handed back (kombu drops sqs_message then).
            if request.acknowledged:
                continue
            where = message_location(request)
            if where is not None:
                held[where[1]] = (request, where[0])
        self.received_at = {h: self.received_at.get(h, now) for h in held}
        for receipt, (request, queue_url) in held.items():
            if request.acknowledged:  # acked while we were extending another one
                continue
            # Never ask past the 12-hour ceiling: SQS would refuse the whole call.
            room = SQS_MAX_VISIBILITY - (now - self.received_at[receipt]) - 60
            timeout = int(min(self.timeout, room))
            if timeout <= 0:
                continue
            self.extend(request, queue_url, receipt, timeout)

    def extend(self, request, queue_url: str, receipt: str, timeout: int) -> None:
        try:
            sqs_for_heartbeats().change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=timeout)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            level = logging.INFO if code in GONE_CODES else logging.WARNING
            log.log(level, "could not extend the visibility of job %s: %s", request.id, exc)
        except BotoCoreError as exc:
            log.warning("could not extend the visibility of job %s: %s", request.id, exc)
        else:
            log.debug("job %s: message hidden for another %d s", request.id, timeout)


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


@signals.task_received.connect
def _refuse_eta_beyond_limit(request=None, **kwargs) -> None:
    delay = eta_delay(request)
    if delay is None or delay <= SQS_MAX_VISIBILITY - ETA_MARGIN:
        return
    reason = EtaBeyondVisibilityLimit(
        f"the job is due in {delay / 3600:.1f} h, but a worker can hold an SQS message for "
        f"at most {(SQS_MAX_VISIBILITY - ETA_MARGIN) / 3600:.0f} h before it runs; "
        "use a countdown/ETA within that, or schedule the job outside the queue")
    log.error("refused job %s: %s", request.id, reason)
    try:
        request.task.backend.store_result(
            request.id, reason, states.FAILURE, request=request._context)
    finally:
        # Revoked: the ETA timer drops it when due; acknowledged: SQS forgets it.
        from celery.worker import state as worker_state

        worker_state.revoked.add(request.id)
        request.acknowledge()
