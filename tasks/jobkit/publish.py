"""What every submission from Python adds to its message, before kombu serialises it.

One `before_task_publish` receiver for both apps (tasks.app, which has the job code, and
tasks.client, which has not), so `delay()`, `apply_async()` and `send_task()` all pass
through it. Each step edits the outgoing headers (and, for the claim check, the body) in
place; the worker reads them back (tasks.worker).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.signals import before_task_publish

# A step: step(body, headers, properties). Called in order, in the submitting process.
PublishStep = Callable[[Any, dict[str, Any], dict[str, Any]], None]
STEPS: list[PublishStep] = []


def _before_publish(sender: str | None = None, body: Any = None,
                    headers: dict[str, Any] | None = None,
                    properties: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:  # protocol 1 carries no headers: this project sends protocol 2 only
        return
    for step in STEPS:
        step(body, headers, properties if properties is not None else {})


def connect() -> None:
    """Idempotent: both apps call it; the receiver is connected once (dispatch_uid)."""
    before_task_publish.connect(_before_publish, weak=False,
                                dispatch_uid="tasks.jobkit.publish")
