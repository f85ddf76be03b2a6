"""What a failed job's error shows over HTTP and in callbacks, and what only Python sees.

A job record's `error` is `{type, module, message, args}`:

* `type` and `module`: always shown;
* `message`: what GET /jobs/{id}, DELETE's answer and the callback body show. It is written
  empty, and then not shown, unless the message is public (below);
* `args`: the exception's arguments as JSON, from which AsyncResult rebuilds the exception,
  message included. Never shown over HTTP: Python clients see everything, as they see the
  traceback.

A message is public when our machinery wrote it and it holds no argument value: a refusal
by the job's schema or signature (tasks.jobkit.registry), the backend's own failures
(ResultTooLarge, ResultNotSerializable), the worker's (a lost process, a shutdown cut-off,
a time limit, a revoke); or when the job vouches for it: `@job(expose=("error",))` (or
"traceback", whose last line is the message) for all its errors, or
`InvalidJobInput(message, public=True)` for one. Anything else a job raises may hold
anything, its arguments among them, and stays private. (The gate's refusals are recorded
by tasks.results.records.JobRecords.reject_message, in words from tasks.jobkit.schema_errors.)

The job's wrapper (tasks.jobkit.registry) sees every exception its job raises and marks the
request with its verdict; the backend reads the mark when it writes the failure, in the same
process: Celery hands the task's own request to the backend.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import TaskRevokedError
from kombu.utils.json import dumps as json_dumps

from tasks.celery_private import Terminated, TimeLimitExceeded, WorkerLostError
from tasks.results.job_item import MAX_ERROR_CHARS

# The attribute the verdict is kept in, on Celery's request context (task.request).
PUBLIC_MARK = "error_public"

# Failures Celery and billiard write from outside a job's code, in words of their own (a
# signal, a limit in seconds, "revoked"): public when no job code raised them (no mark).
OUTSIDE_THE_JOB = frozenset(
    (cls.__module__, cls.__qualname__)
    for cls in (WorkerLostError, Terminated, TimeLimitExceeded, TaskRevokedError)
)


def note_public(request: Any, public: bool) -> None:
    """Remember on the request whether the exception its job raised has a public message."""
    if request is not None:
        setattr(request, PUBLIC_MARK, bool(public))


def marked_public(request: Any) -> bool | None:
    value = getattr(request, PUBLIC_MARK, None)
    return value if isinstance(value, bool) else None


def error_record(encoded: Any, request: Any = None, *, ours: bool = False) -> dict[str, Any]:
    """The record's `error` for Celery's encoded exception (`{exc_type, exc_message,
    exc_module}`, BaseBackend.prepare_exception) or anything else stored as a failure.

    `ours`: the caller built the exception itself, from no argument value (the backend's
    and the worker's own failures)."""
    if isinstance(encoded, dict) and "exc_type" in encoded:
        raw = encoded.get("exc_message")
        args = list(raw) if isinstance(raw, list | tuple) else [raw]
        kind, module = str(encoded["exc_type"]), encoded.get("exc_module")
    else:
        args, kind, module = [str(encoded)], type(encoded).__name__, None
    message = args[0] if len(args) == 1 else ", ".join(map(str, args))
    message = "" if message is None else message
    public = ours or is_public(kind, module, request)
    return {
        "type": kind,
        "module": module,
        "message": message if public else "",
        "args": fitting_args(args, message),
    }


def is_public(kind: str, module: str | None, request: Any) -> bool:
    mark = marked_public(request)
    if mark is not None:  # a job's wrapper saw the exception: its verdict
        return mark
    return (module, kind) in OUTSIDE_THE_JOB


def fitting_args(args: list, message: Any) -> str:
    """The arguments as JSON that the record keeps whole (it cuts at MAX_ERROR_CHARS, and a
    cut JSON would not parse): else the message alone, shortened to fit, so that AsyncResult
    still rebuilds the exception with the start of its message."""
    try:
        text = json_dumps(args)
    except (TypeError, ValueError):
        text = None
    if text is not None and len(text) <= MAX_ERROR_CHARS:
        return text
    cut = str(message)[:MAX_ERROR_CHARS]
    text = json_dumps([cut])
    while len(text) > MAX_ERROR_CHARS:  # escapes (\", \uXXXX) make the JSON longer
        cut = cut[: len(cut) * MAX_ERROR_CHARS // len(text)]  # strictly shorter each time
        text = json_dumps([cut])
    return text
