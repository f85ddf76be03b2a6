"""The chaos test's job (tests/test_fault_chaos.py): one side effect under `once`, journaled.

Loaded by that test's workers only (JOBS_EXTRA_MODULES=tests.jobs,tests.chaos_jobs).

Each run appends JSON lines to `<out>/<job id>.jsonl`, each line one `write(2)` to a file
opened with O_APPEND, so a line is either whole or absent however the process dies:
`start`, `claimed` (`once` said this run may do the effect), `effect` (the side effect
itself), then `marked` (`once` has marked the key done) or `skipped` (`once` said another
run had done it), and `done` when the job returns. Every line names its run (a fresh
token) and its pid, so the test can tell which run did the effect and whether that run's
process died before its mark.
"""

from __future__ import annotations

import json
import os
import time
import uuid

from tasks.jobkit.once import once
from tasks.jobkit.registry import job


def note(out: str, job_id: str, event: str, run: str) -> None:
    line = json.dumps({"event": event, "run": run, "pid": os.getpid(), "at": time.time()})
    fd = os.open(
        os.path.join(out, f"{job_id}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@job(
    schema={
        "type": "object",
        "properties": {"out": {"type": "string"}, "work": {"type": "number"}},
        "required": ["out"],
        "additionalProperties": False,
    },
    public=False,
)
def side_effect(self, out: str, work: float = 0.2) -> str:
    """Work, one effect under `once` that takes time on both sides of the effect (an HTTP
    call: the request is prepared, sent, its answer awaited), then more work: so a kill can
    land before the claim, between the claim and the effect, between the effect and its
    mark, and after the mark."""
    run = uuid.uuid4().hex
    job_id = self.request.id
    note(out, job_id, "start", run)
    time.sleep(work)
    with once(self, f"chaos:{job_id}") as mine:
        if mine:
            note(out, job_id, "claimed", run)
            time.sleep(work)
            note(out, job_id, "effect", run)
            time.sleep(work)
    note(out, job_id, "marked" if mine else "skipped", run)
    time.sleep(work)  # more work after it: a kill here must not make a redelivery redo it
    note(out, job_id, "done", run)
    return run
