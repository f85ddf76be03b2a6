"""Recognising queue messages that no task can run, before Celery trips over them.

Stock Celery stops the whole worker ("Unrecoverable error") on some malformed
messages, e.g. a body without its third element or headers without `id`; the
message then returns after the visibility timeout and stops the next worker.
We check each message first and reject those that would fail: the job record
says why and SQS moves the message to the dead-letter queue after
maxReceiveCount receives.
"""

from __future__ import annotations

import json
from typing import Any

ALLOWED_CONTENT_TYPES = ("application/json",)


def message_problem(message: Any, registered: Any) -> str | None:
    """Why this kombu message cannot be run, or None when it looks runnable."""
    headers = getattr(message, "headers", None)
    if not isinstance(headers, dict):
        return "message has no headers (not a Celery protocol v2 message)"
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        return "headers.id is missing or not a string"
    name = headers.get("task")
    if not isinstance(name, str) or not name:
        return "headers.task is missing or not a string"
    content_type = getattr(message, "content_type", None)
    if content_type not in ALLOWED_CONTENT_TYPES:
        return f"content-type {content_type!r} is not accepted (only application/json)"
    body = getattr(message, "body", None)
    try:
        payload = json.loads(body)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        return f"body is not JSON: {exc}"
    if not (isinstance(payload, list) and len(payload) == 3):
        return "body must be the JSON array [args, kwargs, embed]"
    args, kwargs, embed = payload
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return "body must be [list of args, object of kwargs, embed]"
    if embed is not None and not isinstance(embed, dict):
        return "body's third element must be an object"
    if name not in registered:
        return f"unknown task {name!r}: no such task is registered on this worker"
    return None


def message_task_id(message: Any) -> str | None:
    headers = getattr(message, "headers", None)
    if isinstance(headers, dict) and isinstance(headers.get("id"), str) and headers["id"]:
        return headers["id"]
    return None
