"""A public test job that counts its executions (tests/test_idempotency.py).

Loaded only by that test's worker and shim (JOBS_EXTRA_MODULES=tests.jobs,
tests.idempotency_jobs), so the API of every other test keeps its catalog.
"""

from __future__ import annotations

import time

from tasks.jobkit.registry import job


@job(
    schema={
        "type": "object",
        "properties": {"path": {"type": "string"}, "hold": {"type": "number"}},
        "required": ["path"],
        "additionalProperties": False,
    }
)
def count_run(self, path: str, hold: float = 0) -> str:
    """Appends one line per execution, with no protection of its own: the count is the truth."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{self.request.id} {self.request.hostname}\n")
    time.sleep(hold)
    return self.request.id
