"""Run-lease heartbeat: a running job's lease outlives neither its run nor its message.

The STARTED write takes the job's run lease for one visibility timeout
(tasks.results.run_lease). While the job runs, this middleware renews it on the
visibility heartbeat's period (three beats per timeout): one conditional UpdateItem per
running job (condition: the lease is still this run's token), off the event loop. A
refused renewal means the job finished or retried (the lease is gone), which is no
error. A worker that dies stops renewing: its lease lapses when its message comes back.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.celery_private import request_dict, running_requests
from tasks.ops.settings import Settings
from tasks.worker.middleware import Periodic
from tasks.worker.visibility import heartbeat_interval

log = logging.getLogger(__name__)


class RunLeaseHeartbeat(Periodic):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = heartbeat_interval(self.settings.visibility_timeout)
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
        """On the event loop: hand the renewals to a thread (one beat at a time)."""
        if self.renewing or self.consumer is None:
            return
        leases = self.leases()
        if not leases:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-lease")
        self.renewing = True
        future = self._executor.submit(self.renew, leases)
        future.add_done_callback(lambda _: setattr(self, "renewing", False))

    def renew(self, leases: list[tuple[str, str]]) -> int:
        records = self.consumer.app.backend.records
        renewed = 0
        for job_id, token in leases:
            self.renewals += 1
            try:
                if records.renew_run_lease(job_id, token):
                    renewed += 1
            except (BotoCoreError, ClientError) as exc:
                # The next beat tries again; the lease lasts a whole timeout.
                log.warning("could not renew the run lease of job %s: %s", job_id, exc)
        return renewed
