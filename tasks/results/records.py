"""JobRecords: the job record's state machine, the object that reads and writes the jobs table.

One DynamoDB item per job (partition key `job_id`), plus `group:<id>` items (and
pages) for groups, `chord:<id>` and `chord:<id>:<part>` items for chords, and
`lease:<key>` items for side-effect leases (tasks.results.keys). Every write is
one conditional UpdateItem or PutItem; the condition, not a read before the
write, enforces the transition (tasks.results.transitions: the table of them).

JobRecords is composed of one part per concern: the table and its reads
(tasks.results.table), leases (tasks.results.leases), groups and chords
(tasks.results.groups), revocation (tasks.results.revoke); a job's own status writes are
here. JobRecords sends every request to the table but the listing's Query
(tasks.results.listing); nothing outside tasks.results sends any (tests/test_single_writer.py).

Transitions (docs/job-record.md's table shows the same):

    (none) ──gate rejects, not last receive──► RETRY  [rejected]
    (none) | PENDING | RETRY[rejected] ──gate rejects, last receive──► FAILURE
    (none) | any non-terminal ──worker──► STARTED | PROGRESS | RETRY
    (none) | any non-terminal ──worker──► SUCCESS | FAILURE | REVOKED
    (none) | any non-terminal ──revoke (AsyncResult.revoke, DELETE /jobs/{id})──► REVOKED
    (none) | PENDING | RETRY | SCHEDULED ──worker defers an eta past 15 min──► SCHEDULED
    SUCCESS | FAILURE | REVOKED ──► nothing, ever

* A terminal state (SUCCESS, FAILURE, REVOKED) is never overwritten.
* STARTED takes the job's run lease (`run_lease`, `run_token`: tasks.results.run_lease):
  a worker's STARTED is refused while another run holds an unexpired lease, so a duplicate
  message does not run the job. A crashed first run is told from a running one by the
  lease having expired (a live run renews it on the visibility heartbeat) or by its own
  message coming back (same SQS message id, higher receive count: always allowed). RETRY
  (only the holder's) leaves the lease to lapse, and the retried message (higher `retries`)
  may start at once; a worker's terminal write removes it.

    STARTED [lease free | expired | my message again | a later retry] ──► STARTED [mine]
    STARTED [another run's unexpired lease]  ──► refused: the duplicate is dropped
* The message gate writes only where no worker ever did (no record, PENDING, or
  an earlier rejection): a forged message that reuses a real job's id cannot
  fail that job. It records FAILURE only on the message's last receive (or for
  content no worker could ever run), because during a rolling deploy another
  worker may know a task this one does not; earlier receives record RETRY with
  the reason, and the next worker that starts the job clears the mark.
* Error messages and tracebacks are truncated (tasks.results.job_item); the ResultTooLarge
  fallback is used for DynamoDB's item-size refusal only, never for another validation
  error.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from celery import states

from tasks.results.encoding import (
    Update,
    is_conditional_failure,
    is_item_too_large,
    item_str,
    n,
    s,
    utc_now,
)
from tasks.results.groups import GroupRecords
from tasks.results.job_item import job_update
from tasks.results.keys import job_key
from tasks.results.leases import LeaseRecords, run_lease_condition
from tasks.results.revoke import RevokeRecords
from tasks.results.transitions import (
    GATE_CONDITION,
    SCHEDULED,
    TERMINAL_VALUES,
    status_condition,
)

log = logging.getLogger(__name__)


def _epoch(eta: str) -> float:
    """An ISO 8601 eta's epoch seconds (naive: UTC, as Celery reads it); 0 if unreadable."""
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return 0.0
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class JobRecords(LeaseRecords, GroupRecords, RevokeRecords):
    """Reads and writes of the jobs table, each write a transition of the job's state
    machine. Built with (client callable, table name, result_expires in seconds, run lease
    seconds): tasks.results.table.JobTable."""

    # --- a job's own transitions ---------------------------------------------------
    def transition(
        self,
        job_id: str,
        state: str,
        *,
        result_text: str | None = None,
        error: dict[str, Any] | None = None,
        traceback: str | None = None,
        progress_text: str | None = None,
        facts: dict[str, Any] | None = None,
        refusal: dict | None = None,
        result_ref: dict | None = None,
        holder_only: bool = False,
    ) -> bool:
        """Move the job to `state` unless it is terminal; True if the write was made.

        `result_ref` (a DynamoDB map {bucket, key, size}) stands for a SUCCESS result kept
        in S3 (tasks.results.large_objects): the record keeps it instead of `result`.

        `result_text` is the JSON of a SUCCESS result, `error` the `{type, message,
        module, args}` of a FAILURE, RETRY or REVOKED, `facts` what the request knows
        (task, attempts, worker, argsrepr...). An item over DynamoDB's size limit is
        recorded as FAILURE ResultTooLarge instead. Given a `refusal` dict, a refused
        write fills it with the record that refused it (the terminal item, returned by
        the same request: ReturnValuesOnConditionCheckFailure, no extra read).
        """
        update = job_update(
            state,
            result_text,
            error,
            traceback,
            progress_text,
            facts,
            expires_at=self.expires_at(),
            result_ref=result_ref,
        )
        condition = run_lease_condition(update, state, facts, self.run_lease_seconds, holder_only)
        try:
            return self._apply(job_id, update, condition, refusal)
        except ClientError as exc:
            if not is_item_too_large(exc):
                raise
            log.error("job %s: DynamoDB refused the %s record as too large: %s", job_id, state, exc)
            fallback = job_update(
                states.FAILURE,
                None,
                {
                    "type": "ResultTooLarge",
                    "module": "tasks.jobkit.errors",
                    "message": f"the job record was refused as too large: {exc}",
                },
                None,
                None,
                facts,
                expires_at=self.expires_at(),
            )
            return self._apply(
                job_id,
                fallback,
                run_lease_condition(
                    fallback, states.FAILURE, facts, self.run_lease_seconds, holder_only
                ),
            )

    def reject_message(
        self, job_id: str, reason: str, *, final: bool, facts: dict[str, Any] | None = None
    ) -> bool:
        """The gate refused a message carrying this job id: RETRY, or FAILURE if final."""
        state = states.FAILURE if final else states.RETRY
        if not final:
            reason += " (the message will be received again; another worker may run it)"
        update = job_update(
            state,
            None,
            {"type": "PoisonMessage", "module": "tasks.jobkit.errors", "message": reason},
            None,
            None,
            facts,
            expires_at=self.expires_at(),
        )
        update.set("rejected", s(utc_now()))
        return self._apply(job_id, update, GATE_CONDITION)

    def mark_scheduled(
        self,
        job_id: str,
        *,
        task: str,
        eta: str,
        schedule: str,
        retries: int | None = None,
        refusal: dict | None = None,
    ) -> bool:
        """Record a job deferred until `eta` (ISO 8601) by the one-time schedule `schedule`;
        `retries`: the waiting message's (1 for the first retry), as its run will record it.

        The `schedule` transition: from no record, PENDING, RETRY or SCHEDULED (a duplicate
        message writes the same again: True), never over a run or a finished job (False).
        The run, when the schedule fires, moves it on like any other (STARTED); a revoke
        makes it REVOKED, and its `schedule` tells the revoker which schedule to delete.
        On refusal, `refusal` (if given) receives the record that refused (ALL_OLD)."""
        update = Update()
        now = utc_now()
        update.set("status", s(SCHEDULED))
        update.set("task", s(task[:500]))
        update.set("eta", s(eta[:64]))
        update.set("schedule", s(schedule[:64]))  # EventBridge Scheduler names: 1-64
        if isinstance(retries, int) and not isinstance(retries, bool):
            # Recorded now, so no delivery of an earlier attempt starts while this one waits
            # (`retries` never goes down); no run holds the job while it waits, so the lease
            # of the attempt that retried (RETRY keeps it until it lapses) goes with it.
            update.set("retries", n(retries))
            update.remove("run_lease")
            update.remove("run_token")
        update.set("updated_at", s(now))
        update.set("created_at", s(now), if_absent=True)
        if self.expires_seconds:
            # The TTL counts from the eta: a record must outlive a wait of years.
            due = max(time.time(), _epoch(eta))
            update.set("expires_at", n(int(due) + self.expires_seconds))
        for attr in ("error", "traceback", "rejected"):
            update.remove(attr)  # a retry's exception, the gate's mark: not this state's
        update.values[":retry"] = s(states.RETRY)
        update.values[":scheduled"] = s(SCHEDULED)
        condition = status_condition("schedule")
        if ":retries" in update.values:
            never_down = "attribute_not_exists(#retries) OR #retries <= :retries"
            condition = f"({condition}) AND ({never_down})"
        return self._apply(job_id, update, condition, refusal)

    def _apply(
        self, job_id: str, update: Update, condition: str, refusal: dict | None = None
    ) -> bool:
        update.names["#status"] = "status"
        # The listing index's key rule (tasks.results.index_key): this write lists the job
        # under its status, or (a STARTED write) leaves it out until its lease renewal.
        key = self.index_keys.on_write(update.values[":status"]["S"], job_id)
        if key is None:
            update.remove("list_pk")
        else:
            update.set("list_pk", s(key))
        if "#rejected" in condition:
            update.names["#rejected"] = "rejected"
        # Only the placeholders the write uses: DynamoDB refuses an unused value.
        used = f"{condition} {update.expression()}"
        update.values.update({k: v for k, v in TERMINAL_VALUES.items() if k in used})
        if ":pending" in condition:
            update.values[":pending"] = s(states.PENDING)
        extra = {} if refusal is None else {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=job_key(job_id),
                UpdateExpression=update.expression(),
                ConditionExpression=condition,
                ExpressionAttributeNames=update.names,
                ExpressionAttributeValues=update.values,
                **extra,
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                if refusal is not None:
                    refusal.update(exc.response.get("Item") or {})
                if condition is GATE_CONDITION:
                    log.info("job %s has a record a worker wrote; the gate leaves it alone", job_id)
                else:
                    log.info(
                        "job %s is already %s; a later %s write was ignored",
                        job_id,
                        item_str(refusal or {}, "status") or "finished",
                        update.values[":status"]["S"],
                    )
                return False
            raise
        return True

    def forget(self, job_id: str) -> dict:
        """Delete the record; returns it (ALL_OLD), so that a result kept in S3 (its
        `result_ref`) can be deleted too (tasks.results.backend)."""
        return (
            self.client.delete_item(
                TableName=self.table, Key=job_key(job_id), ReturnValues="ALL_OLD"
            ).get("Attributes")
            or {}
        )

    def reset_for_redrive(self, job_id: str) -> bool:
        """Forget a FAILURE record so that the job's redriven message can run.

        Only a FAILURE: a running job keeps its record and its lease (a redrive run twice
        sends a duplicate, which the lease refuses), a REVOKED one stays revoked, a SUCCESS
        ran already. True if a record was removed."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=job_key(job_id),
                ConditionExpression=status_condition("redrive"),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":failure": s(states.FAILURE)},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def record_callback(self, job_id: str, callback: dict[str, str | int]) -> bool:
        """Write the job's `callback` map (tasks.callbacks): one attempt or outcome.

        Only on a terminal record, and only while the callback is still pending (or not
        yet written): `status` is not touched, and a delivered, failed or refused callback
        is final. Strings and integers only. False if the condition refused the write."""
        value = {
            "M": {
                key: n(v) if isinstance(v, int) else s(str(v))
                for key, v in callback.items()
                if v is not None
            }
        }
        try:
            self.client.update_item(
                TableName=self.table,
                Key=job_key(job_id),
                UpdateExpression="SET #callback = :callback",
                ConditionExpression=(
                    f"({status_condition('callback')}) AND "
                    "(attribute_not_exists(#callback) OR #callback.#state = :pending)"
                ),
                ExpressionAttributeNames={
                    "#callback": "callback",
                    "#status": "status",
                    "#state": "state",
                },
                ExpressionAttributeValues={
                    ":callback": value,
                    ":pending": s("pending"),
                    **TERMINAL_VALUES,
                },
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True
