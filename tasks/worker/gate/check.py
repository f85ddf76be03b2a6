"""The gate's decision on one kombu message: None when Celery may have it, else a Verdict."""

from __future__ import annotations

import json
from typing import Any

from tasks.worker.gate.envelope import PROBLEM_HEADER
from tasks.worker.gate.protocol import (
    ACCEPTED_CONTENT_TYPES,
    ACCEPTED_ENCODINGS,
    BODY,
    HEADERS,
    MAX_DEPTH,
    MAX_ID_CHARS,
    PROPERTIES,
)
from tasks.worker.gate.schema import Schema, first_error, scan
from tasks.worker.middleware.base import Verdict

_HEADERS = Schema(HEADERS)
_PROPERTIES = Schema(PROPERTIES)
_BODY = Schema(BODY)


def job_identity(message: Any) -> tuple[str | None, str | None]:
    """(job id, task name) of a message when its headers carry usable ones."""
    headers = getattr(message, "headers", None)
    if not isinstance(headers, dict):
        return None, None
    job_id, task = headers.get("id"), headers.get("task")
    ok_id = job_id if _storable(job_id, MAX_ID_CHARS) else None
    ok_task = task if _storable(task, 255) else None
    return ok_id, ok_task


def _storable(value: Any, max_chars: int) -> bool:
    """A string the job record can hold (DynamoDB strings are UTF-8)."""
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _payload(message: Any) -> tuple[Any, str | None]:
    """The message's body parsed as JSON, or (None, why it cannot be) for `check` to say."""
    body = getattr(message, "body", None)
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if not isinstance(text, str):
            return None, "body is not text"
        return json.loads(text), None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return None, f"body is not JSON: {str(exc)[:200]}"


def check(message: Any, registered: Any) -> Verdict | None:
    """None when Celery may be given this kombu message, else the verdict saying why not."""
    job_id, task = job_identity(message)

    def refuse(reason: str, permanent: bool = True) -> Verdict:
        return Verdict(reason, permanent, job_id, task)

    headers = getattr(message, "headers", None)
    if isinstance(headers, dict) and isinstance(headers.get(PROBLEM_HEADER), str):
        return refuse(headers[PROBLEM_HEADER])
    if not isinstance(headers, dict):
        return refuse("message has no headers (not a Celery protocol v2 message)")
    # Headers and properties become the request that is pickled for the pool, in the
    # event loop: nested too deep, pickling raises there and stops the worker. (Checked
    # first: the schema's error messages repr() the value.)
    properties = getattr(message, "properties", None)
    payload, unreadable = _payload(message)
    # One walk over all three when nothing is wrong (every message Celery gets); when
    # something is, the walks below in the usual order find which and say so.
    clean = unreadable is None and scan(headers, properties, payload, finite=True) is None
    for where, value in () if clean else (("headers", headers), ("properties", properties)):
        found = scan(value, finite=False)
        if found == "deep":
            return refuse(f"{where} nest deeper than {MAX_DEPTH} levels")
        if found == "surrogate":
            return refuse(f"{where} hold a string that is not Unicode (a lone surrogate)")
    problem = first_error(_HEADERS, headers, "headers")
    if problem:
        return refuse(problem)
    if properties is not None:
        problem = first_error(_PROPERTIES, properties, "properties")
        if problem:
            return refuse(problem)
    content_type = getattr(message, "content_type", None)
    if content_type not in ACCEPTED_CONTENT_TYPES:
        return refuse(f"content-type {content_type!r} is not accepted (only application/json)")
    encoding = getattr(message, "content_encoding", None)
    if str(encoding).lower() not in ACCEPTED_ENCODINGS:
        return refuse(f"content-encoding {encoding!r} is not accepted (only utf-8)")
    if unreadable is not None:
        return refuse(unreadable)
    found = None if clean else scan(payload, finite=True)
    if found == "deep":
        return refuse(f"body nests deeper than {MAX_DEPTH} levels")
    if found == "nonfinite":
        return refuse("body holds a number that is not finite (NaN or Infinity)")
    if found == "surrogate":
        return refuse("body holds a string that is not Unicode (a lone surrogate)")
    problem = first_error(_BODY, payload, "body")
    if problem:
        return refuse(f"body must be the JSON array [args, kwargs, embed] ({problem})")
    if headers["task"] not in registered:
        # Not permanent: during a rolling deploy another worker may know it.
        return refuse(
            f"unknown task {headers['task']!r}: no such task is registered on this worker",
            permanent=False,
        )
    return None
