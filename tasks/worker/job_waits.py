"""Where a job waits inside the worker: timestamps of a sample of jobs, for the bench.

Off unless JOBS_WAIT_TRACE names a file (Settings.wait_trace); on, it changes nothing a
job does: each sampled job adds one JSON line in the consumer when its message is
acknowledged (or handed back) and one in the pool process that ran it, appended with
one `os.write` to a file opened O_APPEND, so lines from several processes never mix.
Times are `time.time()` (the same clock in every process of the machine).

The consumer's line, `{"id", "pid", "screened", "received", "accepted", "noticed",
"finished", "outcome"}`:

* screened: the message reached the consumer (kombu hands over every message of one
  ReceiveMessage in the loop tick its answer arrives, so this is also the receive);
* received: Celery made the request and hands it to the pool (task_received);
* accepted: a pool process began the job (Celery's `time_start`, the child's clock);
* noticed: the consumer learnt of it (on_accepted);
* finished: the consumer acknowledged the message, which frees its prefetch slot (the
  DeleteMessageBatch follows within ack_flush_interval, off the job's path).

The pool process's line, `{"id", "pid", "thread", "ended"}`: the job ran and its SUCCESS (or
FAILURE) write returned (task_postrun); STARTED is written between `accepted` and it.
`bench.waits` turns them into the gaps a job spends in each part.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from typing import Any

from tasks.ops.settings import Settings
from tasks.worker.gate import job_identity
from tasks.worker.middleware.base import Middleware

log = logging.getLogger(__name__)

MAX_TRACKED = 10_000  # jobs between receive and ack we keep times for


def sampled(job_id: str | None, every: int) -> bool:
    """The same answer in the consumer and the pool process: a hash of the job id."""
    if not isinstance(job_id, str):
        return False
    return every <= 1 or zlib.crc32(job_id.encode()) % every == 0


class JobWaits(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.path = settings.wait_trace or None
        self.every = settings.wait_trace_every
        self.times: dict[str, dict[str, Any]] = {}

    def _write(self, line: dict[str, Any]) -> None:
        if self.path is None:
            return
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)  # one write per line: lines of several processes stay whole
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("job wait trace off: cannot write %s (%s)", self.path, exc)
            self.path = None

    def _mark(self, job_id: str | None, name: str, at: float | None = None) -> None:
        if self.path is None or not sampled(job_id, self.every):
            return
        entry = self.times.setdefault(job_id, {"id": job_id})
        entry.setdefault(name, time.time() if at is None else at)
        while len(self.times) > MAX_TRACKED:
            self.times.pop(next(iter(self.times)))

    # --- the consumer ---------------------------------------------------------------
    def screen_message(self, consumer: Any, message: Any) -> None:
        if self.path is not None:
            self._mark(job_identity(message)[0], "screened")
        return None

    def job_received(self, request: Any) -> None:
        self._mark(request.id, "received")

    def job_started(self, request: Any) -> None:
        started = getattr(request, "time_start", None)
        if isinstance(started, float):
            self._mark(request.id, "accepted", started)
        self._mark(request.id, "noticed")

    def job_finished(self, request: Any, outcome: str) -> None:
        if self.path is None:
            return
        entry = self.times.pop(request.id, None)
        if entry is None:
            return
        entry.update(finished=time.time(), outcome=outcome, pid=request.worker_pid)
        self._write(entry)

    # --- the pool process -------------------------------------------------------------
    def run_ended(self, task: Any, state: str) -> None:
        job_id = getattr(task.request, "id", None)
        if self.path is not None and sampled(job_id, self.every):
            ended = time.time()
            self._write(
                {"id": job_id, "pid": os.getpid(), "thread": threading.get_ident(), "ended": ended}
            )
