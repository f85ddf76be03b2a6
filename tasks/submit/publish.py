"""What every submission from Python adds to its message, before kombu serialises it.

One `before_task_publish` receiver for both apps (tasks.app, which has the job code, and
tasks.client, which has not), so `delay()`, `apply_async()` and `send_task()` all pass
through it. Each step edits the outgoing headers in place; the worker reads them back
(tasks.worker). The body cannot be replaced here (the signal gets the tuple `(args,
kwargs, embed)`), so large arguments are moved to S3 one step earlier, in
tasks.submit.claim_check's `as_task_v2`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery.signals import before_task_publish

from tasks.submit import claim_check, sqs_delay

# A step: step(body, headers, properties). Called in order, in the submitting process.
PublishStep = Callable[[Any, dict[str, Any], dict[str, Any]], None]
STEPS: list[PublishStep] = []


def stamp_submitted_at(body: Any, headers: dict[str, Any], properties: dict[str, Any]) -> None:
    """`submitted_at` (epoch ms): when the job was sent; the worker records it (listing)."""
    headers.setdefault("submitted_at", int(time.time() * 1000))


STEPS.append(stamp_submitted_at)
STEPS.append(claim_check.only_this_messages_payload_ref)  # large arguments: S3
STEPS.append(sqs_delay.delay_until_eta)  # a countdown within 900 s: SQS's DelaySeconds


def _before_publish(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if headers is None:  # protocol 1 carries no headers: this project sends protocol 2 only
        return
    for step in STEPS:
        step(body, headers, properties if properties is not None else {})


def connect() -> None:
    """Idempotent: both apps call it; the receiver is connected once (dispatch_uid)."""
    before_task_publish.connect(_before_publish, weak=False, dispatch_uid="tasks.submit.publish")
