"""Backoff for API Gateway's control-plane limits (a few calls per second per account)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")
THROTTLED = {"TooManyRequestsException", "ThrottlingException"}


def with_backoff(call: Callable[..., T], *args, attempts: int = 8, base: float = 0.5,
                 cap: float = 20.0, sleep: Callable[[float], None] = time.sleep,
                 **kwargs) -> T:
    """call(*args, **kwargs), retried with capped, jittered exponential backoff while AWS
    says too many requests; any other error, or the last attempt's, is raised."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in THROTTLED or attempt == attempts - 1:
                raise
            sleep(min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2))
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
