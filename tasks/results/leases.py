"""Leases in the jobs table: a job's run lease, and side-effect leases (tasks.jobkit.once).

The run lease (tokens and request marks: tasks.results.run_lease) is part of a worker's
status write: `run_lease_condition` adds it to the write's update and returns the write's
condition; the heartbeat renews it (`renew_run_lease`). A side-effect lease is its own
`lease:<key>` item: claimed, then finished or released.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from celery import states

from tasks.results.encoding import (
    Update,
    is_conditional_failure,
    item_num,
    item_str,
    n,
    s,
    utc_now,
)
from tasks.results.keys import job_key, lease_item_id
from tasks.results.run_lease import earlier_tokens
from tasks.results.table import JobTable
from tasks.results.transitions import TERMINAL_STATES, TERMINAL_VALUES, WORKER_CONDITION


@dataclass(frozen=True)
class LeaseClaim:
    """What claim_lease found: `claimed` (the caller holds it now), or `done` (the effect
    happened), or neither: another live claim holds it until `until` (epoch seconds)."""

    claimed: bool
    done: bool = False
    until: int | None = None

    def __bool__(self) -> bool:
        return self.claimed


def run_lease_condition(
    update: Update,
    state: str,
    facts: dict[str, Any] | None,
    lease_seconds: int,
    holder_only: bool = False,
) -> str:
    """The run lease's part of a worker write (tasks.results.run_lease); its condition.

    STARTED with this delivery's `run_token` takes the lease: not terminal, and no
    other run holds an unexpired one (or it is this very message, received again, or
    the retry the holder itself sent: `retry_of`), and `retries` never goes down.
    RETRY is written only by the run that holds the lease, and keeps it until it
    lapses (no longer renewed). A terminal state removes it; `holder_only` keeps a
    delivery that did not run the job from ending it while another run holds it."""
    token = (facts or {}).get("run_token")
    token = token if isinstance(token, str) and token else None
    if state in TERMINAL_STATES:
        update.remove("run_lease")
        update.remove("run_token")
        # This write's own token: botocore's repeat of a write that was applied but
        # answered with an error (a 500, a timeout) finds it and succeeds for its caller,
        # who would otherwise take its own finish for another's (and, for a result in
        # S3, delete the object its record names).
        update.set("finish_id", s(uuid.uuid4().hex))
        # Unparenthesised: OR is associative (and parentheses cost the bench's emulator).
        condition = f"{WORKER_CONDITION} OR #finish_id = :finish_id"
        if holder_only and token:
            # A delivery that ends its job without running it (its process lost on the
            # last receive, an ETA out of reach) may not end a job another run holds.
            condition = f"({condition}) AND ({lease_free(update, token)})"
        return condition
    if token is None:
        return WORKER_CONDITION  # not a worker's delivery: no lease to take
    if state == states.RETRY:
        update.names["#run_token"] = "run_token"
        update.values[":my_run_token"] = s(token)
        return (
            f"({WORKER_CONDITION}) AND "
            "(attribute_not_exists(#run_token) OR #run_token = :my_run_token)"
        )
    if state != states.STARTED:
        return WORKER_CONDITION
    update.set("run_lease", n(int(time.time()) + lease_seconds))
    update.set("run_token", s(token))
    free = [lease_free(update, token)]
    retry_of = (facts or {}).get("retry_of")
    if ":retries" in update.values and isinstance(retry_of, str) and retry_of:
        # The retry the holder itself sent (Task.retry sends it before the RETRY write):
        # it takes the lease over from that run only, never from a run that started
        # since (a duplicate that took the lapsed lease while the retry waited).
        update.values[":retry_of"] = s(retry_of)
        free.append(
            "(#run_token = :retry_of AND (attribute_not_exists(#retries) OR #retries < :retries))"
        )
    condition = f"({WORKER_CONDITION}) AND ({' OR '.join(free)})"
    if ":retries" in update.values:
        # A delivery of an earlier attempt never starts once a later retry has: the
        # record's `retries` never goes down.
        condition += " AND (attribute_not_exists(#retries) OR #retries <= :retries)"
    return condition


def lease_free(update: Update, token: str) -> str:
    """No other run holds an unexpired lease: none, expired, or one of this very
    message's deliveries (`token` and the same message's earlier receives)."""
    update.names["#run_lease"] = "run_lease"
    update.names["#run_token"] = "run_token"
    update.values[":lease_now"] = n(int(time.time()))
    update.values[":run_token"] = s(token)
    mine = [":run_token"]
    for number, earlier in enumerate(earlier_tokens(token)):
        update.values[f":earlier_{number}"] = s(earlier)
        mine.append(f":earlier_{number}")
    return (
        f"attribute_not_exists(#run_lease) OR #run_lease < :lease_now OR "
        f"#run_token IN ({', '.join(mine)})"
    )


class LeaseRecords(JobTable):
    """The lease writes of JobRecords."""

    def renew_run_lease(self, job_id: str, token: str, *, list_running: bool = False) -> bool:
        """Push a running job's lease forward (the heartbeat: tasks.worker.lease_heartbeat).

        Only the run that holds it, and only while the job is not finished; False when
        the lease is no longer this run's (the job finished, or retried). `list_running`:
        the job has run long enough to be listed (tasks.results.index_key): the same write
        lists it under STARTED unless a status write listed it already (PROGRESS, RETRY)."""
        names = {"#run_lease": "run_lease", "#run_token": "run_token", "#status": "status"}
        values = {
            ":until": n(int(time.time()) + self.run_lease_seconds),
            ":token": s(token),
            **TERMINAL_VALUES,
        }
        expression = "SET #run_lease = :until"
        if list_running:
            expression += ", #list_pk = if_not_exists(#list_pk, :list_pk)"
            names["#list_pk"] = "list_pk"
            values[":list_pk"] = s(self.index_keys.pk(states.STARTED, job_id))
        try:
            self.client.update_item(
                TableName=self.table,
                Key=job_key(job_id),
                UpdateExpression=expression,
                ConditionExpression=(
                    "#run_token = :token AND NOT #status IN (:success, :failure, :revoked)"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # --- side-effect leases (tasks.jobkit.once) -------------------------------------
    # A claim carries its caller's token in its own condition, so that botocore's retry of
    # a claim whose first attempt was applied (a 500 or a timeout after the write) succeeds
    # for the same caller instead of finding "someone else holds it".
    def claim_lease(
        self,
        key: str,
        lease_seconds: int,
        token: str,
        *,
        job_id: str | None = None,
        run: str | None = None,
    ) -> LeaseClaim:
        """Claim `key` for `lease_seconds` unless it is done or another live claim holds it.

        A claim held by an earlier run of the same job (`job_id`, another `run` token) is
        taken over at once: the job's run lease lets one run at a time hold the job, so
        that run is gone (crashed, handed back) and its effect may not have happened."""
        now = int(time.time())
        update = Update()
        update.set("lease_state", s("claimed"))
        update.set("lease_until", n(now + lease_seconds))
        update.set("lease_token", s(token))
        update.set("created_at", s(utc_now()), if_absent=True)
        if job_id and run:
            update.set("lease_job", s(job_id))
            update.set("lease_run", s(run))
        expires_at = self.expires_at()
        if expires_at:
            update.set("expires_at", expires_at)
        update.values[":now"] = n(now)
        update.values[":done"] = s("done")
        takeover = ""
        if job_id and run:
            takeover = " OR (#lease_job = :lease_job AND #lease_run <> :lease_run)"
        condition = (
            "attribute_not_exists(#lease_state) OR (#lease_state <> :done AND "
            f"(#lease_until < :now OR #lease_token = :lease_token{takeover}))"
        )
        try:
            self.client.update_item(
                TableName=self.table,
                Key=job_key(lease_item_id(key)),
                UpdateExpression=update.expression(),
                ConditionExpression=condition,
                ExpressionAttributeNames=update.names,
                ExpressionAttributeValues=update.values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                old = exc.response.get("Item") or {}
                if item_str(old, "lease_state") == "done":
                    return LeaseClaim(False, done=True)
                return LeaseClaim(False, done=False, until=item_num(old, "lease_until"))
            raise
        return LeaseClaim(True)

    def finish_lease(self, key: str) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=job_key(lease_item_id(key)),
            UpdateExpression="SET #state = :done, #done_at = :now REMOVE #until",
            ExpressionAttributeNames={
                "#state": "lease_state",
                "#done_at": "done_at",
                "#until": "lease_until",
            },
            ExpressionAttributeValues={":done": s("done"), ":now": s(utc_now())},
        )

    def release_lease(self, key: str, token: str) -> bool:
        """Give a claim up (the effect failed): the next attempt may claim it at once.
        Only the caller's own claim; False if it is no longer theirs."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=job_key(lease_item_id(key)),
                UpdateExpression="SET #until = :zero",
                ConditionExpression="#state = :claimed AND #token = :token",
                ExpressionAttributeNames={
                    "#until": "lease_until",
                    "#state": "lease_state",
                    "#token": "lease_token",
                },
                ExpressionAttributeValues={
                    ":zero": n(0),
                    ":claimed": s("claimed"),
                    ":token": s(token),
                },
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True
