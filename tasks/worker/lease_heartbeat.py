"""Run-lease heartbeat: a running job's lease outlives neither its run nor its message.

The STARTED write takes the job's run lease for one visibility timeout
(tasks.results.run_lease). While the job runs, this middleware renews it on the
visibility heartbeat's period (three beats per timeout): one conditional UpdateItem per
running job (condition: the lease is still this run's token), off the event loop. A
refused renewal means the job finished or retried (the lease is gone), which is no
error. A worker that dies stops renewing: its lease lapses when its message comes back.

The renewal also lists a long job (tasks.results.index_key): a STARTED write leaves the
job out of the listing index, and once the job has run JOBS_LIST_RUNNING_AFTER seconds
(counted from when this worker first saw it running) its next renewal lists it under
STARTED. The beat then comes at least every quarter of that delay (at least 1 s), so a job
is listed within 1.5x the delay (+1 s) of its start; the beats in between renew only the
jobs due to be listed, each once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.celery_private import request_dict, running_requests
from tasks.ops.settings import Settings
from tasks.worker.middleware import Periodic
from tasks.worker.visibility import heartbeat_interval

log = logging.getLogger(__name__)


class RunLeaseHeartbeat(Periodic):
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.renew_every = heartbeat_interval(self.settings.visibility_timeout)
        self.list_after = settings.list_running_after  # 0: the STARTED write lists the job
        self.interval = self.renew_every
        if self.list_after > 0:
            self.interval = min(self.renew_every, max(1.0, self.list_after / 4))
        self.last_renewal = clock()
        self.seen: dict[str, float] = {}  # job id -> when this worker first saw it running
        self.listed: set[str] = set()  # job ids whose listing renewal was answered
        self.renewing = False
        self.renewals = 0  # UpdateItem calls made (tests)
        self._executor: ThreadPoolExecutor | None = None

    def consumer_started(self, consumer: Any) -> None:
        # Off only with the visibility heartbeat, for tests that show redelivery without it.
        if not self.settings.visibility_heartbeat:
            return
        super().consumer_started(consumer)

    def tick(self) -> None:
        self.beat()

    def leases(self) -> list[tuple[str, str]]:
        """(job id, run token) of every job a pool process runs for this worker."""
        held = []
        for request in running_requests():
            token = request_dict(request).get("run_token")
            if request.id and isinstance(token, str) and not request.acknowledged:
                held.append((request.id, token))
        return held

    def beat(self) -> None:
        """On the event loop: pick the leases to renew now (all of them once per renewal
        period; in between, only the jobs due to be listed), hand them to a thread (one
        beat at a time)."""
        if self.renewing or self.consumer is None:
            return
        now = self.clock()
        leases = self.leases()
        running = {job_id for job_id, _ in leases}
        self.seen = {job_id: self.seen.get(job_id, now) for job_id in running}
        self.listed &= running
        to_list = {
            job_id
            for job_id in running
            if self.list_after > 0
            and job_id not in self.listed
            and now - self.seen[job_id] >= self.list_after
        }
        if now - self.last_renewal >= self.renew_every - 0.001:
            self.last_renewal = now
        else:
            leases = [lease for lease in leases if lease[0] in to_list]
        if not leases:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-lease")
        self.renewing = True
        future = self._executor.submit(self.renew, leases, to_list)
        future.add_done_callback(lambda _: setattr(self, "renewing", False))

    def renew(
        self, leases: list[tuple[str, str]], to_list: set[str] | frozenset = frozenset()
    ) -> int:
        records = self.consumer.app.backend.records
        renewed = 0
        for job_id, token in leases:
            self.renewals += 1
            listing = job_id in to_list
            try:
                if records.renew_run_lease(job_id, token, list_running=listing):
                    renewed += 1
            except (BotoCoreError, ClientError) as exc:
                # The next beat tries again; the lease lasts a whole timeout.
                log.warning("could not renew the run lease of job %s: %s", job_id, exc)
                continue
            if listing:
                # Listed, or no longer this run's (finished, retried): settled either way.
                self.listed.add(job_id)
        return renewed
