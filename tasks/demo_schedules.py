"""A scheduled job for `make run` to show: it fires every minute from the local scheduler.

Not in JOBS_MODULES (its default), so `ecs deploy` never makes it an EventBridge schedule (one a
minute would keep a Fargate task from ever scaling to zero); scripts/run_local.py loads it
with JOBS_EXTRA_MODULES. A schedule of your own goes on a job in your module, the same way.
"""

from __future__ import annotations

from typing import Any

from tasks.jobkit.registry import job
from tasks.jobkit.schedules import Schedule


@job(
    schema={
        "type": "object",
        "properties": {"note": {"type": "string", "maxLength": 200}},
        "additionalProperties": False,
    },
    public=False,
    schedule=Schedule("rate(1 minute)", kwargs={"note": "every minute"}),
)
def heartbeat(self, note: str = "") -> dict[str, Any]:
    """Say when it was meant to run: the scheduled time travels in the message's headers."""
    return {"note": note, "scheduled_time": getattr(self.request, "scheduled_time", None)}
