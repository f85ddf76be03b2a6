"""Evidence that the consumer makes progress, for the container health check.

Each mark touches the heartbeat file (at most once a second), so its age is the
time since the consumer last showed progress; `python -m tasks.worker.health`
reports unhealthy once it is older than WORKER_HEARTBEAT_MAX_AGE (45 s by default).
The consumer marks when:

* a receive from SQS completes (an empty long poll counts: the loop is alive and
  SQS answers; an idle worker completes one every JOBS_WAIT_TIME_SECONDS, <= 20 s);
* a job starts or finishes;
* it pulses, busy: while every pool process runs a job the consumer does not
  receive (no process could take the message) and no job may start or end for
  hours, so a timer on the consumer's own event loop (kombu's hub) marks every
  `pulse_interval` seconds (a quarter of the max age, at most 5 s), as long as the
  visibility heartbeat keeps the held messages (tasks.worker.visibility.keeping:
  not two beats in a row unconfirmed by SQS);
* it pauses on purpose (draining for scale-in protection, tasks.worker.protection).

So a worker turns unhealthy, within the max age plus:
* its event loop wedged: nothing marks (the pulse is that loop's timer, not a
  thread that would go on while the loop is stuck): nothing more;
* SQS not answering (a hung connection), or a consumer that stopped consuming,
  while a process is free: its receive never completes: one long poll;
* SQS not answering while every process is busy: the visibility heartbeat's
  interval (a third of the visibility timeout) plus ANSWER_GRACE after the first
  beat SQS did not confirm, so before the held messages are delivered again.
A busy worker whose loop turns and whose messages SQS keeps stays healthy for as
long as its jobs run. No AWS call is made for liveness: the pulse writes a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from tasks.celery_private import pool_size, running_requests
from tasks.ops.settings import Settings
from tasks.worker import health
from tasks.worker.middleware import Periodic, built
from tasks.worker.visibility import VisibilityHeartbeat

log = logging.getLogger(__name__)

MIN_WRITE_INTERVAL = 1.0
MAX_PULSE_INTERVAL = 5.0

_lock = threading.Lock()
_path: Path | None = None
_last_write = 0.0


def start(path: str) -> None:
    """Begin recording to `path` (the worker's heartbeat file)."""
    global _path, _last_write
    with _lock:
        _path, _last_write = Path(path), 0.0
    mark("start")


def stop() -> None:
    global _path
    with _lock:
        path, _path = _path, None
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def mark(kind: str) -> None:
    """Record progress of this kind now (cheap: one small write a second at most)."""
    global _last_write
    now = time.time()
    with _lock:
        if _path is None or now - _last_write < MIN_WRITE_INTERVAL:
            return
        _last_write = now
        path = _path
    try:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"kind": kind, "at": now, "pid": os.getpid()}))
        os.replace(tmp, path)
    except OSError:
        log.warning("cannot write heartbeat file %s", path, exc_info=True)


def pulse_interval(max_age: float) -> float:
    """Four pulses per max age (a late one or two still leave the file fresh), <= 5 s."""
    return min(MAX_PULSE_INTERVAL, max(max_age / 4, MIN_WRITE_INTERVAL / 2))


class ProgressMarks(Periodic):
    """Marks a job's start and end, and pulses while every pool process is busy.

    The channel marks receives (tasks.worker.channel), protection its pauses."""

    def __init__(self, settings: Settings) -> None:
        self.heartbeat_file = settings.heartbeat_file
        self.interval = pulse_interval(health.max_age(settings))
        self.keeper: VisibilityHeartbeat | None = None
        self.behind = False

    def consumer_started(self, consumer: Any) -> None:
        start(self.heartbeat_file)
        stack = built(getattr(consumer, "app", None))
        self.keeper = stack.find(VisibilityHeartbeat) if stack is not None else None
        super().consumer_started(consumer)

    def tick(self) -> None:
        """On the event loop, every `interval` seconds."""
        running = len(running_requests())
        slots = pool_size(self.consumer)
        if not running or slots is None or running < slots:
            return  # a process is free: the consumer receives, and each receive marks
        behind = self.keeper is not None and not self.keeper.keeping()
        if behind != self.behind:
            self.behind = behind
            if behind:
                log.warning(
                    "SQS has not confirmed two visibility extensions in a row: the "
                    "busy worker stops marking progress (the health check will fail)"
                )
        if not behind:
            mark(f"busy: {running} jobs running")

    def job_started(self, request: Any) -> None:
        mark("job started")

    def job_finished(self, request: Any, outcome: str) -> None:
        mark(f"job {outcome}")
