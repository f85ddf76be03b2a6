"""Progress reporting that does not cost a DynamoDB write per loop iteration."""

from __future__ import annotations

import time
from typing import Any

PROGRESS_STATE = "PROGRESS"


class Progress:
    """`update(current, message)` writes at most every `min_interval` s, and the last step.

    A write is also how a running job learns that it was revoked: the REVOKED record refuses
    it, and `update` raises JobRevoked (a BaseException, so `except Exception` does not stop
    it), which ends the job as revoked (tasks.jobkit.task). A revoked job therefore stops at
    its next write, at most `min_interval` after its next update."""

    def __init__(self, task: Any, total: int, *, min_interval: float = 0.5) -> None:
        self.task = task
        self.total = max(int(total), 0)
        self.min_interval = min_interval
        self._last_write = 0.0

    def update(self, current: int, message: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        last_step = current >= self.total
        if not (force or last_step) and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        if getattr(self.task.request, "id", None) is None:
            return  # called directly, not as a task: nothing to record
        self.task.update_state(
            state=PROGRESS_STATE,
            meta={"current": int(current), "total": self.total, "message": message},
        )
