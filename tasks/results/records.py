"""The job record's state machine: the only code that writes the jobs table.

One DynamoDB item per job (partition key `job_id`), plus `group:<id>` items for
groups and chords and `lease:<key>` items for side-effect leases. Every write is
one conditional UpdateItem or PutItem; the condition, not a read before the
write, enforces the transition.

Transitions (the README's diagram shows the same):

    (none) ──gate rejects, not last receive──► RETRY  [rejected]
    (none) | PENDING | RETRY[rejected] ──gate rejects, last receive──► FAILURE
    (none) | any non-terminal ──worker──► STARTED | PROGRESS | RETRY
    (none) | any non-terminal ──worker──► SUCCESS | FAILURE | REVOKED
    SUCCESS | FAILURE | REVOKED ──► nothing, ever

* A terminal state (SUCCESS, FAILURE, REVOKED) is never overwritten.
* The message gate writes only where no worker ever did (no record, PENDING, or
  an earlier rejection): a forged message that reuses a real job's id cannot
  fail that job. It records FAILURE only on the message's last receive (or for
  content no worker could ever run), because during a rolling deploy another
  worker may know a task this one does not; earlier receives record RETRY with
  the reason, and the next worker that starts the job clears the mark.
* Error messages and tracebacks are truncated (MAX_ERROR_CHARS,
  MAX_TRACEBACK_CHARS); the ResultTooLarge fallback is used for DynamoDB's
  item-size refusal only, never for another validation error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from celery import states

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset((states.SUCCESS, states.FAILURE, states.REVOKED))
# DynamoDB items hold 400 KB; keep room for the other attributes.
MAX_RESULT_BYTES = 350_000
MAX_TRACEBACK_CHARS = 16_000
MAX_ERROR_CHARS = 4_000
MAX_PROGRESS_BYTES = 16_000
MAX_REPR_CHARS = 2_000
GROUP_PREFIX = "group:"
LEASE_PREFIX = "lease:"
# DynamoDB's words for an item over 400 KB (ValidationException).
ITEM_TOO_LARGE_MARKERS = ("item size has exceeded", "item size to update has exceeded")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def item_str(item: dict, key: str) -> str | None:
    attr = item.get(key)
    return attr.get("S") if attr else None


def item_num(item: dict, key: str) -> int | None:
    attr = item.get(key)
    return int(attr["N"]) if attr and "N" in attr else None


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def is_item_too_large(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") == "ValidationException" and any(
        marker in message for marker in ITEM_TOO_LARGE_MARKERS)


class Update:
    """One UpdateItem expression built from named assignments."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, dict] = {}

    def set(self, attr: str, value: dict, *, if_absent: bool = False) -> None:
        name, placeholder = f"#{attr}", f":{attr}"
        self.names[name] = attr
        self.values[placeholder] = value
        if if_absent:
            self.sets.append(f"{name} = if_not_exists({name}, {placeholder})")
        else:
            self.sets.append(f"{name} = {placeholder}")

    def remove(self, attr: str) -> None:
        self.names[f"#{attr}"] = attr
        self.removes.append(f"#{attr}")

    def expression(self) -> str:
        parts = ["SET " + ", ".join(self.sets)]
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


def error_map(error: dict[str, Any]) -> dict:
    """`{type, message, module}` as a DynamoDB map, the message truncated."""
    mapped = {"type": s(str(error.get("type") or "Exception")[:200]),
              "message": s(str(error.get("message") or "")[:MAX_ERROR_CHARS])}
    if error.get("module"):
        mapped["module"] = s(str(error["module"])[:200])
    if error.get("args") is not None:
        mapped["args"] = s(str(error["args"])[:MAX_ERROR_CHARS])
    return {"M": mapped}


class JobRecords:
    """Writes of the jobs table, each a transition of the job's state machine."""

    def __init__(self, client: Callable[[], Any], table: str, expires_seconds: int | None):
        self._client = client  # a callable: the boto3 client must not cross a fork
        self.table = table
        self.expires_seconds = expires_seconds

    @property
    def client(self):
        return self._client()

    def expires_at(self) -> dict | None:
        if not self.expires_seconds:
            return None
        return n(int(time.time()) + self.expires_seconds)

    # --- a job's own transitions ---------------------------------------------------
    def transition(self, job_id: str, state: str, *, result_text: str | None = None,
                   error: dict[str, Any] | None = None, traceback: str | None = None,
                   progress_text: str | None = None, facts: dict[str, Any] | None = None
                   ) -> bool:
        """Move the job to `state` unless it is terminal; True if the write was made.

        `result_text` is the JSON of a SUCCESS result, `error` the `{type, message,
        module, args}` of a FAILURE, RETRY or REVOKED, `facts` what the request knows
        (task, attempts, worker, argsrepr...). An item over DynamoDB's size limit is
        recorded as FAILURE ResultTooLarge instead.
        """
        update = self._job_update(state, result_text, error, traceback, progress_text, facts)
        try:
            return self._apply(job_id, update, self._worker_condition)
        except ClientError as exc:
            if not is_item_too_large(exc):
                raise
            log.error("job %s: DynamoDB refused the %s record as too large: %s", job_id,
                      state, exc)
            fallback = self._job_update(states.FAILURE, None, {
                "type": "ResultTooLarge", "module": "tasks.jobkit.errors",
                "message": f"the job record was refused as too large: {exc}"},
                None, None, facts)
            return self._apply(job_id, fallback, self._worker_condition)

    def reject_message(self, job_id: str, reason: str, *, final: bool,
                       facts: dict[str, Any] | None = None) -> bool:
        """The gate refused a message carrying this job id: RETRY, or FAILURE if final."""
        state = states.FAILURE if final else states.RETRY
        if not final:
            reason += " (the message will be received again; another worker may run it)"
        update = self._job_update(state, None, {
            "type": "PoisonMessage", "module": "tasks.jobkit.errors", "message": reason},
            None, None, facts)
        update.set("rejected", s(utc_now()))
        return self._apply(job_id, update, self._gate_condition)

    # Written by the worker: anything but a terminal state may move on.
    _worker_condition = (
        "attribute_not_exists(#status) OR NOT (#status IN (:success, :failure, :revoked))")
    # Written by the gate: only where no worker has written.
    _gate_condition = (
        "attribute_not_exists(#status) OR #status = :pending"
        " OR (attribute_exists(#rejected) AND NOT (#status IN (:success, :failure, :revoked)))")

    def _apply(self, job_id: str, update: Update, condition: str) -> bool:
        update.names["#status"] = "status"
        if "#rejected" in condition:
            update.names["#rejected"] = "rejected"
        update.values.update({":success": s(states.SUCCESS), ":failure": s(states.FAILURE),
                              ":revoked": s(states.REVOKED)})
        if ":pending" in condition:
            update.values[":pending"] = s(states.PENDING)
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(job_id)},
                UpdateExpression=update.expression(), ConditionExpression=condition,
                ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values)
        except ClientError as exc:
            if is_conditional_failure(exc):
                if condition is self._gate_condition:
                    log.info("job %s has a record a worker wrote; the gate leaves it alone",
                             job_id)
                else:
                    log.info("job %s is already finished; a later %s write was ignored",
                             job_id, update.values[":status"]["S"])
                return False
            raise
        return True

    def _job_update(self, state: str, result_text: str | None, error: dict | None,
                    traceback: str | None, progress_text: str | None,
                    facts: dict[str, Any] | None) -> Update:
        now = utc_now()
        update = Update()
        if state == states.SUCCESS:
            update.set("result", s(result_text if result_text is not None else "null"))
            for attr in ("error", "traceback", "progress"):
                update.remove(attr)
        elif error is not None:
            update.set("error", error_map(error))
            if traceback:
                update.set("traceback", s(traceback[-MAX_TRACEBACK_CHARS:]))
        if state == states.STARTED:
            update.set("started_at", s(now))
        if progress_text is not None and len(progress_text.encode()) <= MAX_PROGRESS_BYTES:
            update.set("progress", s(progress_text))
        if state in TERMINAL_STATES:
            update.set("finished_at", s(now))
        update.set("status", s(state))
        update.set("updated_at", s(now))
        update.set("created_at", s(now), if_absent=True)
        expires_at = self.expires_at()
        if expires_at:
            update.set("expires_at", expires_at)
        if facts:
            self._add_facts(update, facts, state)
        if state == states.STARTED:
            update.remove("rejected")  # a worker ran it: the gate may not write it again
        return update

    @staticmethod
    def _add_facts(update: Update, facts: dict[str, Any], state: str) -> None:
        if isinstance(facts.get("task"), str):
            update.set("task", s(facts["task"][:500]))
        for attr in ("attempts", "retries"):
            if isinstance(facts.get(attr), int) and not isinstance(facts[attr], bool):
                update.set(attr, n(facts[attr]))
        if isinstance(facts.get("worker"), str):
            update.set("worker", s(facts["worker"][:500]))
        if state in (states.STARTED, *TERMINAL_STATES):
            for attr in ("args", "kwargs", "queue", "parent_id", "root_id", "group_id"):
                value = facts.get(attr)
                if isinstance(value, str) and value:
                    update.set(attr, s(value[:MAX_REPR_CHARS]))

    def forget(self, job_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"job_id": s(job_id)})

    def reset_for_redrive(self, job_id: str) -> bool:
        """Forget a rejected or failed job's record so its redriven message can run.

        A SUCCESS stays: the job already ran. True if a record was removed."""
        try:
            self.client.delete_item(
                TableName=self.table, Key={"job_id": s(job_id)},
                ConditionExpression="attribute_exists(job_id) AND #s <> :success",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":success": s(states.SUCCESS)})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # --- groups and chords --------------------------------------------------------
    def group_key(self, group_id: str) -> dict:
        return {"job_id": s(GROUP_PREFIX + group_id)}

    def save_group(self, group_id: str, result_text: str) -> None:
        update = Update()
        update.set("kind", s("group"))
        update.set("result", s(result_text))
        update.set("created_at", s(utc_now()), if_absent=True)
        expires_at = self.expires_at()
        if expires_at:
            update.set("expires_at", expires_at)
        self.client.update_item(
            TableName=self.table, Key=self.group_key(group_id),
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values)

    def delete_group(self, group_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self.group_key(group_id))

    def add_chord_part(self, group_id: str, part_id: str) -> int:
        """Count a finished chord part; returns how many distinct parts are done.

        A string set, not a counter: a redelivered part adds its id again and
        changes nothing, so duplicates cannot fire the body early."""
        attributes = self.client.update_item(
            TableName=self.table, Key=self.group_key(group_id),
            UpdateExpression="ADD #done :id",
            ExpressionAttributeNames={"#done": "done_ids"},
            ExpressionAttributeValues={":id": {"SS": [part_id]}},
            ReturnValues="UPDATED_NEW")["Attributes"]
        return len(attributes["done_ids"]["SS"])

    def claim_chord(self, group_id: str, lease_seconds: int) -> bool:
        """Take the right to send a chord's body for `lease_seconds`.

        The body is sent (with its pre-assigned id) before `chord_fired`; a
        claimer that crashes in between leaves a lease that expires, so the
        next redelivered part sends it: the body is never lost, and at most
        re-sent under its own id."""
        now = int(time.time())
        try:
            self.client.update_item(
                TableName=self.table, Key=self.group_key(group_id),
                UpdateExpression="SET #lease = :until",
                ConditionExpression=("attribute_not_exists(#fired) AND "
                                     "(attribute_not_exists(#lease) OR #lease < :now)"),
                ExpressionAttributeNames={"#fired": "chord_fired_at", "#lease": "chord_lease"},
                ExpressionAttributeValues={":until": n(now + lease_seconds), ":now": n(now)})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def mark_chord_fired(self, group_id: str) -> None:
        self.client.update_item(
            TableName=self.table, Key=self.group_key(group_id),
            UpdateExpression="SET #fired = :now REMOVE #lease",
            ExpressionAttributeNames={"#fired": "chord_fired_at", "#lease": "chord_lease"},
            ExpressionAttributeValues={":now": s(utc_now())})

    # --- side-effect leases (tasks.jobkit.once) -------------------------------------
    def claim_lease(self, key: str, lease_seconds: int) -> bool:
        """Claim `key` unless it is done or someone else's claim is still running."""
        now = int(time.time())
        update = Update()
        update.set("lease_state", s("claimed"))
        update.set("lease_until", n(now + lease_seconds))
        update.set("created_at", s(utc_now()), if_absent=True)
        expires_at = self.expires_at()
        if expires_at:
            update.set("expires_at", expires_at)
        update.values[":now"] = n(now)
        update.values[":done"] = s("done")
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(LEASE_PREFIX + key)},
                UpdateExpression=update.expression(),
                ConditionExpression=("attribute_not_exists(#lease_state) OR "
                                     "(#lease_state <> :done AND #lease_until < :now)"),
                ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values)
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def finish_lease(self, key: str) -> None:
        self.client.update_item(
            TableName=self.table, Key={"job_id": s(LEASE_PREFIX + key)},
            UpdateExpression="SET #state = :done, #done_at = :now REMOVE #until",
            ExpressionAttributeNames={"#state": "lease_state", "#done_at": "done_at",
                                      "#until": "lease_until"},
            ExpressionAttributeValues={":done": s("done"), ":now": s(utc_now())})

    def release_lease(self, key: str) -> None:
        """Give a claim up (the effect failed): the next attempt may claim it at once."""
        self.client.update_item(
            TableName=self.table, Key={"job_id": s(LEASE_PREFIX + key)},
            UpdateExpression="SET #until = :zero",
            ConditionExpression="#state = :claimed",
            ExpressionAttributeNames={"#until": "lease_until", "#state": "lease_state"},
            ExpressionAttributeValues={":zero": n(0), ":claimed": s("claimed")})
