"""revoke(terminate=True) on SQS: the worker stops a revoked job that does not stop by itself.

A revoke only writes the job's record (tasks.results.control; SQS cannot broadcast). A job
that has not started is dropped when its STARTED write is refused, and a running job that
reports progress stops at its next write (tasks.jobkit.task), both at no extra read. A job
that never writes while it runs is stopped here, if the revoke asked to terminate it:

every REVOKE_CHECK_SECONDS, while this worker runs jobs, one strongly consistent
BatchGetItem (off the event loop; 100 records a call) reads the `status` and `terminate` of
the records of the jobs its pool processes run, and a job whose record is REVOKED with
`terminate` set is killed with that signal, as Celery's own revoke(terminate=True) kills it
(`Request.terminate`: the pool process gets the signal, the job counts as revoked, its
message is acknowledged, and the pool starts a new process). So a terminated job stops
within REVOKE_CHECK_SECONDS of its revoke, plus one read and the signal's delivery.

No job running: no timer work, no read. A revoke without terminate never kills: as in
Celery, it only keeps the job from starting (and here, stops it at its next progress write).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import states

from tasks.celery_private import request_context, running_requests, terminate_request
from tasks.results.revoked_mark import note_revoked
from tasks.results.table import BATCH_GET_LIMIT
from tasks.worker.middleware import Periodic

log = logging.getLogger(__name__)

# How often a worker that runs jobs reads their records (one BatchGetItem per 100 jobs).
REVOKE_CHECK_SECONDS = 5.0


class RevokedJobTerminator(Periodic):
    def __init__(self, interval: float = REVOKE_CHECK_SECONDS) -> None:
        self.interval = interval
        self.reading = False
        self.reads = 0  # BatchGetItem calls made (tests)
        self._executor: ThreadPoolExecutor | None = None

    def tick(self) -> None:
        self.check()

    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="revocation")
        return self._executor

    def check(self) -> None:
        """On the event loop: hand the read of the running jobs' records to a thread."""
        if self.reading or self.consumer is None:
            return  # the last read has not come back yet
        running = {r.id: r for r in running_requests() if r.id and not r.acknowledged}
        if not running:
            return
        self.reading = True
        future = self.executor().submit(self.read, list(running))
        future.add_done_callback(lambda done: self.on_read(done, running))

    def read(self, job_ids: list[str]) -> dict[str, str]:
        """{job id: signal} for the jobs whose record is REVOKED with `terminate` set."""
        records = self.consumer.app.backend.records
        doomed: dict[str, str] = {}
        self.reads += -(-len(job_ids) // BATCH_GET_LIMIT)  # BatchGetItem calls
        # Keys left unprocessed (throttling) are simply read at the next check.
        items = records.read_many(job_ids, "status", "terminate", retry_unprocessed=False)
        for job_id, item in items.items():
            if item.get("status", {}).get("S") == states.REVOKED and "terminate" in item:
                doomed[job_id] = item["terminate"]["S"]
        return doomed

    def on_read(self, future: Future, running: dict[str, Any]) -> None:
        self.reading = False
        try:
            doomed = future.result()
        except Exception as exc:  # the next check reads again
            log.warning("could not read the records of the running jobs: %s", exc)
            return
        if doomed and self.consumer is not None:
            self.consumer.call_soon(self.terminate, doomed, running)

    def terminate(self, doomed: dict[str, str], running: dict[str, Any]) -> None:
        """On the event loop: kill the pool process of each revoked job still running."""
        still = set(map(id, running_requests()))
        for job_id, signal in doomed.items():
            request = running[job_id]
            if request.acknowledged or id(request) not in still:
                continue  # it ended meanwhile
            log.warning(
                "job %s[%s] was revoked with terminate: sending %s to its process %s",
                request.name,
                job_id,
                signal,
                request.worker_pid,
            )
            # The record is REVOKED already: Celery's own revoked write is skipped.
            note_revoked(request_context(request))
            try:
                terminate_request(request, self.consumer, signal)
            except Exception:
                log.exception("could not terminate job %s", job_id)
