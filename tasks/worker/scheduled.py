"""Scheduled messages: what EventBridge Scheduler (or tasks.ops.local_scheduler) sends.

A schedule's SQS target sends its Input verbatim as the message body, with the context
attributes filled in; it cannot base64-encode, so it cannot write kombu's envelope. It
sends a JSON object instead (tasks.jobkit.schedules.scheduled_body):

    {"scheduled": 1, "task": "...", "kwargs": {...}, "schedule": "<schedule ARN>",
     "scheduled_time": "2026-12-01T06:00:00Z", "execution_id": "...", "attempt": "1"}

The channel (tasks.worker.channel.EnvelopeGate) turns a body of this form into the
protocol v2 message `delay()` would have sent, before kombu decodes it, so the rest of the
worker sees a normal message; a malformed one becomes the gate's stand-in and is rejected
with its reason, like any other poison message.

The job id is derived, not taken: EventBridge's execution id changes with every attempt
(docs: "assigns for each attempted invocation"), so it is uuid5 of the schedule's ARN and
its scheduled time, the same for every retried delivery of one firing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tasks.celery_private import saferepr
from tasks.jobkit.schedules import LOCAL_PREFIX, job_id
from tasks.worker import gate

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

SCHEDULED: dict[str, Any] = {
    "type": "object",
    "required": [
        "scheduled",
        "task",
        "kwargs",
        "schedule",
        "scheduled_time",
        "execution_id",
        "attempt",
    ],
    "properties": {
        "scheduled": {"enum": [1]},
        "task": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
        },
        "kwargs": {
            "type": "object",
            "maxProperties": 100,
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"},
        },
        # An EventBridge schedule's ARN, or local:<name> from tasks.ops.local_scheduler.
        "schedule": {
            "type": "string",
            "maxLength": 512,
            "pattern": r"^(arn:aws[a-z-]*:scheduler:[a-z0-9-]+:[0-9]{12}:schedule/"
            r"[0-9A-Za-z_.-]{1,64}/[0-9A-Za-z_.-]{1,64}|local:[0-9A-Za-z_.-]{1,64})$",
        },
        "scheduled_time": {
            "type": "string",
            "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
            r"(\.[0-9]{1,6})?Z$",
        },
        # AWS documents its form only by example (d32c5kddcf5bb8c3): any short text.
        "execution_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "attempt": {"type": "string", "pattern": r"^[0-9]{1,6}$"},
    },
    "additionalProperties": False,
}
_SCHEDULED = gate.Schema(SCHEDULED)


def looks_scheduled(raw_body: Any) -> dict | None:
    """The parsed body if it is a JSON object with a "scheduled" key, else None (kombu's
    envelopes are base64, or JSON without that key: they go the usual way)."""
    if not isinstance(raw_body, str) or not raw_body.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(raw_body)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) and "scheduled" in parsed else None


def identity(parsed: dict) -> dict[str, str]:
    """The id and task the record of a refused scheduled message is kept under, if usable."""
    out = {}
    task, schedule, when = parsed.get("task"), parsed.get("schedule"), parsed.get("scheduled_time")
    if isinstance(task, str) and 0 < len(task) <= 255:
        out["task"] = task
    if isinstance(schedule, str) and isinstance(when, str) and len(schedule + when) < 1024:
        with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate
            out["id"] = job_id(schedule, when)
    return out


def problem(parsed: dict) -> str | None:
    """Why this scheduled body cannot be a job, or None."""
    found = gate.scan(parsed, finite=True)
    if found == "deep":
        return f"scheduled message nests deeper than {gate.MAX_DEPTH} levels"
    if found == "nonfinite":
        return "scheduled message holds a number that is not finite (NaN or Infinity)"
    if found == "surrogate":
        return "scheduled message holds a string that is not Unicode (a lone surrogate)"
    refused = gate.first_error(_SCHEDULED, parsed, "scheduled message")
    if refused:
        return refused
    try:
        _epoch_ms(parsed["scheduled_time"])
    except (ValueError, OverflowError):
        return f"scheduled message.scheduled_time {parsed['scheduled_time']!r} is not a date"
    return None


def _epoch_ms(text: str) -> int:
    return int(
        datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000
    )


def envelope(parsed: dict, queue_name: str) -> dict[str, Any]:
    """The kombu envelope `delay(**kwargs)` would have written (a valid scheduled body)."""
    task, kwargs, schedule = parsed["task"], parsed["kwargs"], parsed["schedule"]
    when = parsed["scheduled_time"]
    jid = job_id(schedule, when)
    inner = json.dumps([[], kwargs, EMBED])
    return {
        "body": base64.b64encode(inner.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": jid,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": jid,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": saferepr(kwargs, 1024),
            "origin": "local-scheduler"
            if schedule.startswith(LOCAL_PREFIX)
            else "eventbridge-scheduler",
            "ignore_result": False,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
            "submitted_at": _epoch_ms(when),
            # The job sees these as self.request.scheduled_time, .schedule, ...
            "scheduled_time": when,
            "schedule": schedule,
            "schedule_execution": parsed["execution_id"],
            "schedule_attempt": int(parsed["attempt"]),
        },
        "properties": {
            "correlation_id": jid,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue_name},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def as_kombu_message(message: dict, parsed: dict, queue_name: str) -> tuple[dict, str | None]:
    """(the SQS message to hand kombu, a problem or None). A valid scheduled body becomes
    base64 of the envelope, as kombu writes it; the rest of the message is kept."""
    found = problem(parsed)
    if found is not None:
        return message, found
    body = base64.b64encode(json.dumps(envelope(parsed, queue_name)).encode()).decode()
    return {**message, "Body": body}, None
