"""The mark a refused write leaves on a request when the job's record is REVOKED.

The result backend sets it (a STARTED or progress write refused by a REVOKED record), the
worker's terminator sets it, and the job side (tasks.jobkit.task) reads it. It lives here,
beside the records, so a client that only submits and reads never imports job code.
"""

from __future__ import annotations

from typing import Any

# The attribute the mark is kept in, on Celery's request context (task.request).
REVOKED_MARK = "job_revoked"


def note_revoked(request: Any) -> None:
    """Remember on the request that the job's record is REVOKED."""
    setattr(request, REVOKED_MARK, True)


def revoked_noted(request: Any) -> bool:
    return bool(getattr(request, REVOKED_MARK, False))
