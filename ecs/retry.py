"""Waiting on AWS: backoff for throttling, and retries with a deadline where AWS documents
eventual consistency (a role just created, a queue name just freed, a service draining).

Every wait takes a `Clock`, so that tests play minutes of AWS time without sleeping, and
says what it waits for on a progress line, so that a deploy never sits silent.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")
THROTTLED = {"TooManyRequestsException", "ThrottlingException"}


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


REAL_CLOCK = Clock()


class WaitTimeout(RuntimeError):
    """A documented wait took longer than its deadline."""


def with_backoff(
    call: Callable[..., T],
    *args,
    attempts: int = 8,
    base: float = 0.5,
    cap: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs,
) -> T:
    """call(*args, **kwargs), retried with capped, jittered exponential backoff while AWS
    says too many requests; any other error, or the last attempt's, is raised."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in THROTTLED or attempt == attempts - 1:
                raise
            sleep(min(cap, base * 2**attempt) * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


class Patient:
    """A client whose every call goes through with_backoff."""

    def __init__(self, client, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._sleep = sleep

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr) or name in ("get_paginator", "can_paginate", "meta"):
            return attr

        def call(*args, **kwargs):
            return with_backoff(attr, *args, sleep=self._sleep, **kwargs)

        return call


# Which errors mean "wait, AWS is not there yet": each returns a short reason, or None.
Retryable = Callable[[ClientError], str | None]

# A role used right after create_role (or put_role_policy) is rejected until IAM has
# propagated it, which AWS documents as eventually consistent (seconds, at times a minute).
# These are the answers ECS, API Gateway and Application Auto Scaling give meanwhile; the
# same codes with other messages (a bad cpu value, a malformed ARN) are real errors.
_ROLE_ERROR_CODES = {
    "InvalidParameterException",
    "ClientException",
    "BadRequestException",
    "ValidationException",
}
_ROLE_NOT_READY = re.compile(
    r"role is not valid|invalid role|unable to assume|cannot be assumed|could not be assumed"
    r"|not authorized to perform: sts:AssumeRole|service linked role"
    r"|must allow .* to assume the role",
    re.IGNORECASE,
)  # EventBridge Scheduler's


def role_not_ready(exc: ClientError) -> str | None:
    error = exc.response.get("Error", {})
    if error.get("Code") in _ROLE_ERROR_CODES and _ROLE_NOT_READY.search(error.get("Message", "")):
        return f"IAM role not usable yet: {error.get('Message', '').strip()}"
    return None


# SQS: "You must wait 60 seconds after deleting a queue before you can create another queue
# with the same name." The JSON protocol reports the query-compatible code.
_QUEUE_DELETED_RECENTLY = {"AWS.SimpleQueueService.QueueDeletedRecently", "QueueDeletedRecently"}


def queue_deleted_recently(exc: ClientError) -> str | None:
    if exc.response.get("Error", {}).get("Code") in _QUEUE_DELETED_RECENTLY:
        return "queue deleted less than 60 s ago; SQS frees the name 60 s after the delete"
    return None


# EC2: a security group is refused (DependencyViolation) while the network interfaces of
# stopped tasks still use it; Fargate releases them minutes after the service is gone.
def interfaces_not_released(exc: ClientError) -> str | None:
    if exc.response.get("Error", {}).get("Code") == "DependencyViolation":
        return "stopped tasks' network interfaces not released yet"
    return None


def retry_until(
    call: Callable[..., T],
    *args,
    retryable: Retryable,
    deadline: float,
    progress: Callable[[str], None],
    clock: Clock = REAL_CLOCK,
    base: float = 2.0,
    cap: float = 15.0,
    **kwargs,
) -> T:
    """call(*args, **kwargs) until it succeeds. While it fails with an error `retryable`
    names, wait (growing, capped) and report on `progress`; other errors are raised at
    once, and a retryable one still there after `deadline` seconds becomes WaitTimeout."""
    start = clock.monotonic()
    delay = base
    while True:
        try:
            return call(*args, **kwargs)
        except ClientError as exc:
            reason = retryable(exc)
            if reason is None:
                raise
            left = deadline - (clock.monotonic() - start)
            if left <= 0:
                raise WaitTimeout(f"gave up after {deadline:.0f}s: {reason}") from exc
            wait = min(delay, cap, left)
            progress(f"{reason}; retrying in {wait:.0f}s, {left:.0f}s left")
            clock.sleep(wait)
            delay *= 2


def poll(
    check: Callable[[], tuple[bool, str]],
    *,
    deadline: float,
    interval: float,
    progress: Callable[[str], None],
    what: str,
    clock: Clock = REAL_CLOCK,
) -> str:
    """Call check() every `interval` seconds until it returns (True, text); report each
    (False, text) on `progress`. Past the deadline raise WaitTimeout with the last text."""
    start = clock.monotonic()
    while True:
        done, text = check()
        if done:
            return text
        elapsed = clock.monotonic() - start
        if elapsed >= deadline:
            raise WaitTimeout(f"{what}: not done after {deadline:.0f}s ({text})")
        progress(f"{text}; {elapsed:.0f}s of at most {deadline:.0f}s")
        clock.sleep(min(interval, deadline - elapsed))
