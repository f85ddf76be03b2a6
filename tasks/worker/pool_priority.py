"""Pool processes yield the CPU to the consumer: they run at a lower priority (nice).

On a task with fewer vCPUs than pool processes (Fargate's 1 vCPU with the default 2, or
more), the pool processes and the consumer take turns on one CPU. The consumer's event
loop is what hands a process its next job, reads its result and acknowledges it, and
extends visibility and run leases; while busy pool processes hold the CPU, a process that
has finished a job waits for the loop before it gets the next (the bench's
"process idle between jobs", tasks.worker.job_waits). `WORKER_POOL_NICE` lowers every
pool process's priority by that many steps (Linux `nice`), in each process the pool
starts, replacements included, so the loop runs as soon as it has work, and the pool
processes have every cycle it leaves. 0 leaves them at the consumer's priority.

Prefork only: with `--pool threads` or `solo` there is no process to lower.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from tasks.celery_private import current_app_object
from tasks.ops.settings import Settings
from tasks.worker.middleware.base import Middleware
from tasks.worker.middleware.stack import built

log = logging.getLogger(__name__)


class PoolPriority(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.increment = settings.pool_nice

    def lower(self) -> None:
        """In a pool process: lower its priority by `increment` (nothing if 0)."""
        if self.increment > 0:
            try:
                os.nice(self.increment)
            except OSError as exc:  # not permitted here: run at the consumer's priority
                log.warning("pool process priority left as is: %s", exc)


@signals.worker_process_init.connect(weak=False, dispatch_uid="tasks.worker.pool_priority")
def _lower_pool_process(**_: Any) -> None:
    # Celery's process initializer made the worker's app the current one before this signal.
    stack = built(current_app_object())
    priority = stack.find(PoolPriority) if stack is not None else None
    if priority is not None:
        priority.lower()
