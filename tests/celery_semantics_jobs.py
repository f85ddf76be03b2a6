"""Jobs for tests/test_celery_semantics.py: the tasks Celery's own documentation uses.

Loaded by that module's worker through JOBS_EXTRA_MODULES (never in production).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.celery_app import app
from tasks.jobkit.registry import job

NUMBER = {"type": "number"}
TWO_NUMBERS = {
    "type": "object",
    "properties": {"x": NUMBER, "y": NUMBER},
    "required": ["x", "y"],
    "additionalProperties": False,
}


class ExpectedException(Exception):
    """As in Celery's integration tests (t/integration/tasks.py): equal when the args are."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExpectedException) and self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)


@job(schema=TWO_NUMBERS, public=False)
def subtract(self, x: float, y: float) -> float:
    """canvas.html, Partials: `subtract.s(10).delay(30)` is subtract(30, 10)."""
    return x - y


@job(schema=TWO_NUMBERS, public=False)
def mul(self, x: float, y: float) -> float:
    return x * y


@job(
    schema={
        "type": "object",
        "properties": {"messages": {"type": "array", "items": {"type": "string"}}},
    },
    public=False,
)
def fail_with(self, *messages: str) -> None:
    """Raise ExpectedException(*messages): an exception with several arguments."""
    raise ExpectedException(*messages)


@job(
    schema={
        "type": "object",
        "properties": {"task_id": {"type": "string"}},
        "required": ["task_id"],
    },
    public=False,
)
def error_of(self, task_id: str) -> dict[str, Any]:
    """A bound errback: Celery 5.7 sends it as a task with the failed task's id (bound
    tasks are never called in-process, Backend._call_task_errbacks); it reads the error."""
    exc = self.app.AsyncResult(task_id).result
    return {
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "args": list(exc.args),
        "equal": exc == ExpectedException(*exc.args),
    }


@app.task(name="tests.celery_semantics_jobs.log_error")
def log_error(request: Any, exc: BaseException, traceback: str | None, path: str) -> None:
    """canvas.html's errback (request, exc, traceback), called in the failing job's worker
    process with the raw exception; it writes what it got to `path`."""
    Path(path).write_text(
        json.dumps(
            {
                "request_id": request.id,
                "type": type(exc).__qualname__,
                "module": type(exc).__module__,
                "args": list(exc.args),
                "equal": exc == ExpectedException(*exc.args),
                "traceback": traceback,
            }
        )
    )


@job(schema={"type": "object", "properties": {"countdown": NUMBER}}, public=False, max_retries=3)
def retry_once(self, countdown: float) -> int:
    """tasks.html, Retrying: retried once after `countdown` seconds, then succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt"), countdown=countdown)
    return self.request.retries
