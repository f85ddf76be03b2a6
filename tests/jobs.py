"""Jobs only the tests use; never registered in the production worker.

Test workers load this module through JOBS_EXTRA_MODULES=tests.jobs (tests/conftest.py).
"""

from __future__ import annotations

import os
import time

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


@job(schema={"type": "object",
             "properties": {"path": {"type": "string"}, "line": {"type": "string"},
                            "hold": {"type": "number"}},
             "required": ["path", "line"]},
     public=False)
def append_line(self, path: str, line: str, hold: float = 0) -> bool:
    """A side effect that must happen once per job, even when SQS delivers twice."""
    time.sleep(hold)
    with once(self, f"append_line:{self.request.id}") as mine:
        if mine:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return mine


@job(schema={"type": "object", "properties": {"fail_times": {"type": "integer"}}},
     public=False, max_retries=5)
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
