"""Evidence that the consumer makes progress, for the container health check.

The consumer marks progress when a receive from SQS completes (an empty long
poll counts: the loop is alive and SQS answers), when a job starts or finishes,
and when SQS accepts a visibility extension for a held job (a long job is
running). Each mark touches the heartbeat file (at most once a second), so its
age is the time since the last progress; `python -m tasks.worker.health`
reports unhealthy once it is older than WORKER_HEARTBEAT_MAX_AGE (45 s by
default; the longest idle gap is one long poll, at most 20 s).

A timer that touches the file would go on touching it while the consumer is
wedged (a hung connection, a consumer that stopped consuming): this does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from tasks.ops.settings import Settings
from tasks.worker.middleware import Middleware

log = logging.getLogger(__name__)

MIN_WRITE_INTERVAL = 1.0

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


class ProgressMarks(Middleware):
    """Marks a job's start and end; the channel marks receives, sqs_io extensions."""

    def consumer_started(self, consumer) -> None:
        start(Settings.from_env().heartbeat_file)

    def job_started(self, request) -> None:
        mark("job started")

    def job_finished(self, request, outcome: str) -> None:
        mark(f"job {outcome}")
