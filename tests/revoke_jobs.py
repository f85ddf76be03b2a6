"""Jobs for tests/test_revoke.py (loaded by its workers through JOBS_EXTRA_MODULES only).

Each leaves a trace in a file, so a test can tell what ran: a side effect that stays
absent proves a revoked job did not do it.
"""

from __future__ import annotations

import time

from tasks.jobkit.progress import Progress
from tasks.jobkit.registry import job

PATH = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "seconds": {"type": "number"}},
    "required": ["path"],
}


def note(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


@job(schema=PATH, public=False)
def checks_is_aborted(self, path: str, seconds: float = 60) -> str:
    """Works without progress, asking `self.is_aborted()` twice a second; returns when asked."""
    note(path, "started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if self.is_aborted():
            note(path, "saw the revoke")
            return "stopped early"
        time.sleep(0.5)
    note(path, "finished")
    return "finished"


@job(schema=PATH, public=False)
def swallows_exceptions(self, path: str, seconds: float = 60) -> str:
    """Reports progress inside `except Exception: pass`: JobRevoked must still stop it."""
    progress = Progress(self, 1000, min_interval=0)
    note(path, "started")
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        step += 1
        try:
            progress.update(step % 999, f"step {step}")
        except Exception:
            pass
        finally:
            note(path, f"step {step}")
        time.sleep(0.2)
    note(path, "finished")
    return "finished"
