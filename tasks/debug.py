"""Demo jobs: add, sleep with progress, fail. Jobs only the tests need live in tests/jobs.py."""

from __future__ import annotations

import time
from typing import Any

from tasks.jobkit.progress import Progress
from tasks.jobkit.registry import job

NUMBER = {"type": "number"}


@job(
    schema={
        "type": "object",
        "properties": {"x": NUMBER, "y": NUMBER},
        "required": ["x", "y"],
        "additionalProperties": False,
    },
    summary="Add two numbers.",
)
def add(self, x: float, y: float) -> float:
    return x + y


@job(
    schema={
        "type": "object",
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": 600},
            "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        },
        "required": ["seconds"],
        "additionalProperties": False,
    },
    summary="Wait, reporting progress: a stand-in for long work.",
)
def sleep(self, seconds: float, steps: int = 10) -> dict[str, Any]:
    progress = Progress(self, steps, min_interval=0)
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        progress.update(step, f"step {step} of {steps}")
    return {"slept": seconds, "steps": steps}


@job(
    schema={
        "type": "object",
        "properties": {"message": {"type": "string", "maxLength": 1000}},
        "additionalProperties": False,
    },
    summary="Fail with the given message (to see what a failure looks like).",
)
def fail(self, message: str = "this job failed on purpose") -> None:
    raise RuntimeError(message)
