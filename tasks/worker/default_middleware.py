"""The worker's default middleware list, in order, and the list of an app.

Order matters where two middlewares answer the same hook: the gate screens a message
before anything else sees it, then deferral takes those due too far ahead; the lost-run
record writes FAILURE before the callbacks read the record's state.
"""

from __future__ import annotations

from typing import Any

from tasks.ops.settings import Settings
from tasks.worker.claim_check import ClaimCheck
from tasks.worker.completion_callbacks import CompletionCallbacks
from tasks.worker.deferral import Deferral
from tasks.worker.gate.middleware import MessageGate
from tasks.worker.job_waits import JobWaits
from tasks.worker.lease_heartbeat import RunLeaseHeartbeat
from tasks.worker.liveness import ProgressMarks
from tasks.worker.metrics import JobMetrics
from tasks.worker.middleware.base import Middleware
from tasks.worker.middleware.stack import MiddlewareStack
from tasks.worker.pool_priority import PoolPriority
from tasks.worker.protection import ScaleInProtection
from tasks.worker.rejection_record import RejectionRecord
from tasks.worker.revocation import RevokedJobTerminator
from tasks.worker.shutdown import ShutdownDeadline
from tasks.worker.visibility import VisibilityHeartbeat
from tasks.worker.worker_lost import LostRunRecord


def default_middleware(settings: Settings) -> list[Middleware]:
    return [
        MessageGate(),
        Deferral(settings),  # after the gate: only a well-formed message is deferred
        ClaimCheck(settings),
        RejectionRecord(),
        LostRunRecord(),
        CompletionCallbacks(),
        ProgressMarks(settings),
        VisibilityHeartbeat(settings),
        ShutdownDeadline(),
        ScaleInProtection(settings),
        JobMetrics(settings),
        RevokedJobTerminator(),
        RunLeaseHeartbeat(settings),
        JobWaits(settings),  # off unless JOBS_WAIT_TRACE names a file (the bench)
        PoolPriority(settings),  # in each pool process as it starts (worker_process_init)
    ]


def default_stack(app: Any = None) -> MiddlewareStack:
    """The default list, with this app's settings (the environment's for an app not made
    by tasks.app_factory, or none)."""
    return MiddlewareStack(default_middleware(Settings.of(app)))


def of(app: Any) -> MiddlewareStack:
    """The app's middleware list (`app.middleware`), made with the defaults if the app has
    none yet (an app not made by tasks.app_factory: bench, a test's)."""
    stack = getattr(app, "middleware", None)
    if not isinstance(stack, MiddlewareStack):
        stack = default_stack(app)
        app.middleware = stack
    return stack
