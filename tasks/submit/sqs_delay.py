"""A countdown or ETA within 15 minutes is held by SQS (DelaySeconds), not by a worker.

Celery turns `countdown=` into the `eta` header; without a delay the message is received at
once and a worker holds it in memory until it is due (tasks.worker.visibility). SQS delays a
message by up to 900 seconds (SendMessage's DelaySeconds), and kombu's SQS channel sends
the message property `DelaySeconds` as that parameter. So the delay is set here, from the
`eta` header, when the message is published: the worker receives it when it is due.

The `eta` header stays, so a job never runs before its ETA (Celery's promise): the delay is
rounded up, and a message that arrives early all the same (clock skew) is held by the
worker's ETA handling for what is left. An ETA further than 900 s away is left as it was:
the worker holds it (a later step defers it without any worker).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

# SQS's maximum DelaySeconds (SendMessage: "Valid values: 0 to 900").
MAX_DELAY_SECONDS = 900
PROPERTY = "DelaySeconds"  # kombu's SQS channel reads it (or `delay_seconds`)


def delay_seconds(eta: datetime, now: datetime) -> int | None:
    """The SQS delay for a message due at `eta`, published at `now`: the whole seconds until
    then, rounded up (never before the ETA), 0 for an ETA past; None beyond SQS's 900 s."""
    wait = (eta - now).total_seconds()
    if wait > MAX_DELAY_SECONDS:
        return None
    return max(0, math.ceil(wait))


def parse_eta(value: Any) -> datetime | None:
    """The `eta` header as an aware UTC datetime (Celery writes ISO 8601; a naive one is UTC,
    as the worker reads it), or None if absent or unreadable (the worker's gate judges it).
    The worker's deferral (tasks.worker.deferral) reads the header with this too."""
    if isinstance(value, datetime):
        eta = value
    elif isinstance(value, str) and value:
        try:
            eta = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return (eta if eta.tzinfo is not None else eta.replace(tzinfo=UTC)).astimezone(UTC)


def eta_text(eta: datetime) -> str:
    """An eta as the job's record and logs say it: UTC, ISO 8601 to the millisecond,
    `2026-12-06T20:00:06.791+00:00`, the form of the 202 answer's `eta` (send_task.response
    in tasks/http_contract/templates). Microseconds past the millisecond are dropped."""
    aware = eta if eta.tzinfo is not None else eta.replace(tzinfo=UTC)  # naive: UTC
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")


def delay_until_eta(body: Any, headers: dict[str, Any], properties: dict[str, Any]) -> None:
    """Publish step: `DelaySeconds` from the `eta` header. A caller's own `DelaySeconds` or
    `delay_seconds` (kombu's option, passed to apply_async) is kept as it is."""
    if PROPERTY in properties or "delay_seconds" in properties:
        return
    eta = parse_eta(headers.get("eta"))
    if eta is None:
        return
    delay = delay_seconds(eta, datetime.now(UTC))
    if delay:  # None: too far for SQS (the worker holds it); 0: due already
        properties[PROPERTY] = delay
