"""A refused message's job record says why: RETRY while SQS will deliver it again, FAILURE
on its last receive or when no worker could ever run it (through the state machine)."""

from __future__ import annotations

import logging
from typing import Any

from tasks.worker.middleware.base import Middleware, Rejection

log = logging.getLogger(__name__)


class RejectionRecord(Middleware):
    def message_rejected(self, consumer: Any, message: Any, rejection: Rejection) -> None:
        verdict = rejection.verdict
        if verdict.job_id is None:
            return  # no usable id: nothing to record it under
        try:
            consumer.app.backend.records.reject_message(
                verdict.job_id,
                verdict.reason,
                final=rejection.final,
                facts={
                    "task": verdict.task,
                    "attempts": rejection.receive_count,
                    "worker": consumer.hostname,
                },
            )
        except Exception:
            log.exception("could not record the rejection of job %s", verdict.job_id)
