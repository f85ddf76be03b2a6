"""`app.control` on SQS: revoke through the job record; no broadcast.

Celery's remote control publishes to a fanout exchange that every worker listens on. SQS
has no fanout, so `celery inspect`, `ping`, `rate_limit` and the rest have nothing to travel
on (remote control is off: celeryconfig.py). Revoking does not need the workers' memory
here: `revoke` marks the job REVOKED in its record, through the state machine
(tasks.results.records.JobRecords.revoke), and workers read that record anyway:

* a job that has not started is dropped when its worker's STARTED write is refused
  (acknowledged, never run);
* a running job stops at its next progress write, or when it checks `self.is_aborted()`;
* with `terminate=True`, its worker also kills it within REVOKE_CHECK_SECONDS
  (tasks.worker.revocation);
* a job waiting for its eta (SCHEDULED: tasks.worker.deferral) also loses its one-time
  schedule, deleted here (cancel_schedule, which the console's cancel uses too). If the
  delete fails, or the schedule is firing already, the REVOKED record still holds: the
  worker's STARTED write of the fired message is refused and the job never runs.

A finished job stays finished: `revoke` returns what each revoke did (records.Revocation),
and logs a warning for a job it could not revoke. `AsyncResult.revoke()` and
`GroupResult.revoke()` call this; `app.control.terminate(id)` is `revoke(id, terminate=True)`.

The app chooses it with `Celery(control="tasks.results.control:Control")` (tasks.celery_app,
tasks.client). It imports nothing of the worker.
"""

from __future__ import annotations

import logging
import signal as signals
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from celery.app.control import Control as CeleryControl

from tasks.celery_private import signum
from tasks.results.revoke import Revocation

log = logging.getLogger(__name__)

NO_BROADCAST = (
    "SQS cannot broadcast to workers (no fanout queues: Celery's SQS page says it does not "
    "support worker remote control), so remote control is off. Revoke with "
    "AsyncResult(id).revoke() or app.control.revoke(id) (the job record); watch the workers "
    "with `python -m ecs status` / `logs` and the jobs table."
)


def signal_name(sig: str | int | None) -> str:
    """`"SIGTERM"` for None, "TERM", "SIGTERM", 15 or signal.SIGTERM; ValueError otherwise."""
    try:
        return signals.Signals(signum(sig or "SIGTERM")).name
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"not a signal: {sig!r}") from None


class ScheduleFate(Enum):
    """What became of a revoked job's one-time schedule (EventBridge Scheduler DeleteSchedule)."""

    DELETED = "deleted"
    FIRED = "fired"  # ResourceNotFoundException: it fired (and deleted itself), or never was
    FAILED = "failed"  # any other error: it is left to fire
    LEFT = "left"  # no scheduler to ask (a console without settings)


# What a schedule left behind does: the record is REVOKED, so its STARTED write is refused.
LEFT_TO_FIRE = "it will fire, and the worker drops the job (its record is REVOKED)"


@dataclass(frozen=True)
class ScheduleCancel:
    """The outcome of deleting a revoked job's schedule, and the sentence that tells it."""

    name: str
    fate: ScheduleFate
    error: str = ""  # FAILED: what the delete raised

    def __str__(self) -> str:
        return SENTENCES[self.fate].format(name=self.name, error=self.error)


SENTENCES = {
    ScheduleFate.DELETED: "its schedule {name} deleted",
    ScheduleFate.FIRED: "its schedule {name} had fired already; the job will not run (REVOKED)",
    ScheduleFate.FAILED: "its schedule {name} was not deleted ({error}); " + LEFT_TO_FIRE,
    ScheduleFate.LEFT: "its schedule {name} was left (this console has no scheduler); "
    + LEFT_TO_FIRE,
}


def cancel_schedule(settings: Any, name: str, *, scheduler: Any = None) -> ScheduleCancel:
    """Delete a revoked job's one-time schedule (tasks.ops.one_time_schedules.cancel) and say
    what became of it. A failure is returned, not raised: the record says REVOKED already, so
    a schedule left to fire runs nothing. Without settings there is nothing to ask: LEFT."""
    if settings is None:
        return ScheduleCancel(name, ScheduleFate.LEFT)
    from tasks.ops import one_time_schedules  # the Scheduler client only where it is needed

    try:
        found = one_time_schedules.cancel(settings, name, scheduler=scheduler)
    except Exception as exc:  # the revoke itself is done: tell, never raise
        return ScheduleCancel(name, ScheduleFate.FAILED, str(exc))
    return ScheduleCancel(name, ScheduleFate.DELETED if found else ScheduleFate.FIRED)


class Control(CeleryControl):
    def revoke(
        self,
        task_id: str | Iterable[str],
        destination: Any = None,
        terminate: bool = False,
        signal: str | int | None = "SIGTERM",
        **kwargs: Any,
    ) -> Revocation | list[Revocation]:
        """Mark the job(s) REVOKED unless finished; one conditional UpdateItem each.

        Takes Celery's arguments (`connection`, `reply`, `timeout` and `destination` have no
        meaning without a broadcast and are ignored). Returns a Revocation for one id, a
        list of them for several: `.revoked`, `.status` (a finished job keeps SUCCESS or
        FAILURE), `.previous`."""
        single = isinstance(task_id, str)
        ids = [task_id] if single else list(task_id)
        name = signal_name(signal) if terminate else None
        records = self.app.backend.records
        outcomes = [records.revoke(job_id, terminate=name) for job_id in ids]
        for outcome in outcomes:
            if not outcome.revoked:
                log.warning("%s: a finished job stays finished", outcome)
            elif outcome.schedule:
                said = cancel_schedule(self.app.backend.settings, outcome.schedule)
                failed = said.fate is ScheduleFate.FAILED
                log.log(
                    logging.WARNING if failed else logging.INFO, "job %s: %s", outcome.job_id, said
                )
        return outcomes[0] if single else outcomes

    def revoke_by_stamped_headers(self, headers: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "revoke_by_stamped_headers needs the workers' memory, which only a broadcast "
            "reaches; revoke by id instead. " + NO_BROADCAST
        )

    def broadcast(self, command: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"app.control {command!r}: {NO_BROADCAST}")
