"""The base class of every job task, and how a job learns that it was revoked.

A revoke (AsyncResult.revoke, app.control.revoke, DELETE /jobs/{id}) only writes the job's
record (tasks.results.records.JobRecords.revoke): SQS cannot carry Celery's broadcast. The
worker learns of it from its own writes, which the REVOKED record refuses, at no extra read:

* the STARTED write (task_track_started) before the job runs: `before_start` drops the job
  (Celery's Ignore: the message is acknowledged, the job never runs);
* a progress write while it runs (`Progress.update`, `self.update_state`): a @job raises
  JobRevoked there, and its wrapper (tasks.jobkit.registry) ends it the same way;
* `self.is_aborted()`, when a job asks: one strongly consistent GetItem.

The result backend marks the request (tasks.results.revoked_mark) when a refusal came from a REVOKED
record; everything here reads that mark. A STARTED write refused by the job's run lease
(another run holds the job, or it finished: tasks.results.run_lease) marks the request as a
duplicate, and `before_start` drops it the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, states
from celery.exceptions import Ignore

from tasks.jobkit.errors import JobRevoked
from tasks.results.revoked_mark import note_revoked, revoked_noted
from tasks.results.run_lease import duplicate_finished, duplicate_noted

log = logging.getLogger(__name__)


class JobTask(Task):
    # A string, so defining jobs never imports the worker runtime: the worker
    # resolves it when it builds its strategy. The request carries SQS's
    # receive count into the task's context.
    Request = "tasks.worker.request:SQSRequest"
    # Set by @job, whose wrapper turns JobRevoked into the end of the job: a task without
    # it keeps Celery's behaviour (its refused progress write is only logged).
    stops_when_revoked = False
    # What GET /jobs/{id} and callbacks show beyond the defaults (@job(expose=...)); a task
    # not made by @job shows nothing more (tasks.callbacks.attempt reads it).
    expose: frozenset[str] = frozenset()

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        # Celery calls this just after the STARTED write: refused by a REVOKED record, the
        # job must not run.
        if revoked_noted(self.request):
            raise self.dropped_as_revoked("before it started")
        # Refused by the job's run lease (tasks.results.run_lease): another run holds it,
        # or the job finished. Ignore acknowledges this duplicate message and stores nothing.
        duplicate = duplicate_noted(self.request)
        if duplicate:
            log.warning(
                "job %s[%s] is %s: duplicate message dropped", self.name, task_id, duplicate
            )
            finished = duplicate_finished(self.request)
            if finished and getattr(self.request, "chord", None):
                # A part whose run ended but whose process died before it told its chord:
                # its message comes back and is told again (the counter may run ahead, never
                # behind; the body waits for every member's record: tasks.results.chords).
                self.backend.on_chord_part_return(self.request, finished, None)
            raise Ignore(f"duplicate: {duplicate}")

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        super().update_state(task_id, state, meta, **kwargs)
        if (
            self.stops_when_revoked
            and task_id in (None, self.request.id)
            and revoked_noted(self.request)
        ):
            raise JobRevoked(f"job {self.request.id} was revoked")

    def is_aborted(self, **kwargs: Any) -> bool:
        """True once the job has been revoked (the name of Celery's AbortableTask check).

        One strongly consistent GetItem of the job's record (1 read request unit per 4 KB
        of record), unless a refused write has already told. A job that sees True should
        stop: return, or raise JobRevoked. Either way it ends as revoked: its result is not
        stored and its callbacks are not sent."""
        request = self.request
        if request.id is None or getattr(request, "called_directly", True):
            return False
        if revoked_noted(request):
            return True
        if self.backend.record_status(request.id) == states.REVOKED:
            note_revoked(request)
            return True
        return False

    is_revoked = is_aborted

    def dropped_as_revoked(self, when: str) -> Ignore:
        """What ends a revoked job: Celery's Ignore (the message is acknowledged and nothing
        more is stored: the record is REVOKED already). A chord it belongs to is told, as
        Celery's own mark_as_revoked tells it."""
        request = self.request
        log.warning("job %s[%s] was revoked %s: dropped", self.name, request.id, when)
        self.backend.mark_as_revoked(request.id, "revoked", request=request, store_result=False)
        return Ignore(f"revoked {when}")
