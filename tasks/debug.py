"""Small tasks for demos and tests: add, sleep with progress, fail, crash, a guarded side effect."""

from __future__ import annotations

import os
import time
from typing import Any

from tasks.idempotency import first_time
from tasks.progress import Progress
from tasks.registry import job

NUMBER = {"type": "number"}


@job(schema={"type": "object", "properties": {"x": NUMBER, "y": NUMBER},
             "required": ["x", "y"], "additionalProperties": False},
     summary="Add two numbers.")
def add(self, x: float, y: float) -> float:
    return x + y


@job(schema={"type": "object",
             "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 600},
                            "steps": {"type": "integer", "minimum": 1, "maximum": 100,
                                      "default": 10}},
             "required": ["seconds"], "additionalProperties": False},
     summary="Wait, reporting progress: a stand-in for long work.")
def sleep(self, seconds: float, steps: int = 10) -> dict[str, Any]:
    progress = Progress(self, steps, min_interval=0)
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        progress.update(step, f"step {step} of {steps}")
    return {"slept": seconds, "steps": steps}


@job(schema={"type": "object",
             "properties": {"message": {"type": "string", "maxLength": 1000}},
             "additionalProperties": False},
     summary="Fail with the given message (to see what a failure looks like).")
def fail(self, message: str = "this job failed on purpose") -> None:
    raise RuntimeError(message)


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
    if not first_time(self.app.backend, f"append_line:{self.request.id}"):
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return True


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
