"""Jobs only the tests use; never registered in the production worker.

Test workers load this module through JOBS_EXTRA_MODULES=tests.jobs (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tasks.jobkit.once import once
from tasks.jobkit.registry import job

NUMBER = {"type": "number"}


@job(schema={"type": "object", "properties": {}, "additionalProperties": False}, public=False)
def crash(self) -> None:
    """Kill the worker process running it: a stand-in for an out-of-memory kill."""
    os._exit(137)


@job(schema={"type": "object", "properties": {"size": {"type": "integer"}}}, public=False)
def big_result(self, size: int) -> str:
    return "x" * size


@job(
    schema={
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "line": {"type": "string"},
            "hold": {"type": "number"},
        },
        "required": ["path", "line"],
    },
    public=False,
)
def append_line(self, path: str, line: str, hold: float = 0) -> bool:
    """A side effect that must happen once per job, even when SQS delivers twice."""
    time.sleep(hold)
    with once(self, f"append_line:{self.request.id}") as mine:
        if mine:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return mine


@job(
    schema={"type": "object", "properties": {"fail_times": {"type": "integer"}}},
    public=False,
    max_retries=5,
)
def flaky(self, fail_times: int = 1) -> int:
    """Raises until it has been retried `fail_times` times, then succeeds."""
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError("not yet"), countdown=0)
    return self.request.retries


@job(schema={"type": "object", "properties": {"by": NUMBER}}, public=False)
def increment(self, value: float, by: float = 1) -> float:
    """For chains: takes the previous task's result as its first argument."""
    return value + by


@job(schema={"type": "object"}, public=False)
def total(self, values: list[float]) -> float:
    """For chords: the body receives the header's results as one list."""
    return sum(values)


@job(schema={"type": "object", "properties": {"path": {"type": "string"}}}, public=False)
def echo(self, value: Any, path: str | None = None) -> Any:
    """Returns its argument (a chord body showing what the header passed on); with `path`,
    also appends it there as a JSON line, once per run, so a test can count the runs."""
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(value) + "\n")
    return value


@job(
    schema={
        "type": "object",
        "properties": {"path": {"type": "string"}, "timeout": NUMBER},
        "required": ["path"],
    },
    public=False,
)
def wait_for_file(self, value: Any, path: str, timeout: float = 60) -> Any:
    """Returns `value` once `path` exists: a chord part a test holds back and then releases."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)
    return value


@job(
    schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    public=False,
)
def record_errback(self, task_id: str, path: str) -> str:
    """An errback as Celery calls a bound one: with the failed task's id (the chord's body)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"task_id": task_id}) + "\n")
    return task_id
