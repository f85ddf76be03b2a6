"""The revoke transition: REVOKED unless the job finished, in one conditional UpdateItem.

tasks/http_contract/templates/revoke_job.request.vtl writes the very same expressions for
DELETE /jobs/{job_id} (tests/test_revoke.py and tests/test_templates.py compare them), so
keep the two in step. The app's `control.revoke` (tasks.results.control) calls this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from celery import states

from tasks.results.encoding import is_conditional_failure, iso_utc, item_str, n, s
from tasks.results.job_item import error_map
from tasks.results.keys import job_key
from tasks.results.table import JobTable
from tasks.results.transitions import status_condition

log = logging.getLogger(__name__)

REVOKE_ERROR = {
    "type": "TaskRevokedError",
    "module": "celery.exceptions",
    "message": "revoked",
    "args": '["revoked"]',
}
REVOKE_EXPRESSION = (
    "SET #status = :revoked, #error = :revoke_error, #revoked_at = :now, #finished_at = :now,"
    " #updated_at = :now, #created_at = if_not_exists(#created_at, :now),"
    " #list_pk = :list_pk"
)
REVOKE_EXPIRES = ", #expires_at = :now_s + :ttl"  # the TTL, when results expire
REVOKE_TERMINATE = ", #terminate = :signal"  # revoke(terminate=True): the signal to send
REVOKE_CONDITION = status_condition("revoke")


@dataclass(frozen=True)
class Revocation:
    """What one revoke did. `revoked`: this call made the record REVOKED; `status`: the
    record's state now (a finished job keeps SUCCESS or FAILURE); `previous`: its state
    before (PENDING when there was no record: queued, or unknown)."""

    job_id: str
    revoked: bool
    status: str
    previous: str
    terminate: str | None = None  # the signal a worker sends it (revoke(terminate=True))
    # The one-time schedule of a job revoked while SCHEDULED (its record's `schedule`): the
    # revoker deletes it (tasks.results.control); if it fires anyway, the worker drops it.
    schedule: str | None = None

    def __str__(self) -> str:
        if self.revoked:
            return f"job {self.job_id} revoked (was {self.previous})"
        return f"job {self.job_id} not revoked: already {self.status}"


class RevokeRecords(JobTable):
    """The revoke write of JobRecords."""

    def revoke_request(
        self, job_id: str, *, terminate: str | None = None, now: datetime | None = None
    ) -> dict[str, Any]:
        """The revoke transition's UpdateItem (without its ReturnValues): REVOKED unless
        the record is terminal, with `revoked_at`, and `terminate` (a signal name) when the
        running job is to be stopped by its worker (tasks.worker.revocation)."""
        when = now or datetime.now(UTC)
        expression = REVOKE_EXPRESSION
        names = {
            f"#{a}": a
            for a in (
                "status",
                "error",
                "revoked_at",
                "finished_at",
                "updated_at",
                "created_at",
                "list_pk",
            )
        }
        values = {
            ":revoked": s(states.REVOKED),
            ":success": s(states.SUCCESS),
            ":failure": s(states.FAILURE),
            ":revoke_error": error_map(REVOKE_ERROR),
            ":now": s(iso_utc(when)),
            ":list_pk": s(self.index_keys.pk(states.REVOKED, job_id)),
        }
        if self.expires_seconds:
            expression += REVOKE_EXPIRES
            names["#expires_at"] = "expires_at"
            values[":now_s"] = n(int(when.timestamp()))
            values[":ttl"] = n(self.expires_seconds)
        if terminate:
            expression += REVOKE_TERMINATE
            names["#terminate"] = "terminate"
            values[":signal"] = s(terminate)
        return {
            "TableName": self.table,
            "Key": job_key(job_id),
            "UpdateExpression": expression,
            "ConditionExpression": REVOKE_CONDITION,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def revoke(self, job_id: str, *, terminate: str | None = None) -> Revocation:
        """Mark the job REVOKED unless it has finished: one conditional UpdateItem, no read.

        A job with no record yet (queued, or waiting for its countdown) is REVOKED too: the
        worker's STARTED write is then refused and the job never runs. A finished job is
        left as it is; the refusal brings its record back (ALL_OLD) to say so."""
        try:
            old = (
                self.client.update_item(
                    **self.revoke_request(job_id, terminate=terminate),
                    ReturnValues="ALL_OLD",  # `schedule` too, which the write leaves
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ).get("Attributes")
                or {}
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            status = item_str(exc.response.get("Item") or {}, "status") or states.PENDING
            log.info("job %s is already %s: not revoked", job_id, status)
            return Revocation(
                job_id, False, status, status, item_str(exc.response.get("Item") or {}, "terminate")
            )
        previous = item_str(old, "status") or states.PENDING
        log.info(
            "job %s revoked (was %s%s)",
            job_id,
            previous,
            f"; its worker sends it {terminate}" if terminate else "",
        )
        schedule = item_str(old, "schedule") or None
        return Revocation(job_id, True, states.REVOKED, previous, terminate, schedule)
