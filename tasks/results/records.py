"""The job record's state machine: the only code that writes the jobs table.

One DynamoDB item per job (partition key `job_id`), plus `group:<id>` items (and
pages) for groups, `chord:<id>` and `chord:<id>:<part>` items for chords, and
`lease:<key>` items for side-effect leases. Every write is
one conditional UpdateItem or PutItem; the condition, not a read before the
write, enforces the transition.

Transitions (the README's diagram shows the same):

    (none) ──gate rejects, not last receive──► RETRY  [rejected]
    (none) | PENDING | RETRY[rejected] ──gate rejects, last receive──► FAILURE
    (none) | any non-terminal ──worker──► STARTED | PROGRESS | RETRY
    (none) | any non-terminal ──worker──► SUCCESS | FAILURE | REVOKED
    (none) | any non-terminal ──revoke (AsyncResult.revoke, DELETE /jobs/{id})──► REVOKED
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
* Error messages and tracebacks are truncated (MAX_ERROR_CHARS,
  MAX_TRACEBACK_CHARS); the ResultTooLarge fallback is used for DynamoDB's
  item-size refusal only, never for another validation error.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from celery import states

from tasks.results.run_lease import earlier_tokens
from tasks.results.transitions import status_condition

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
CHORD_PREFIX = "chord:"
# BatchGetItem reads at most 100 keys a call.
BATCH_GET_LIMIT = 100
# One page of a saved group's JSON (10,000 members make ~540 KB: two pages).
GROUP_PAGE_CHARS = 300_000
# The sparse index of job items by status (tasks.results.listing, GET /jobs): its partition
# key `list_pk` is "<status>#<shard>", the shard taken from the job id's last hex digit so
# that one status's writes spread over LIST_SHARDS partitions (README: Listing jobs).
LIST_SHARDS = 4
# A run lease's length when none is given: Settings' default visibility timeout.
DEFAULT_RUN_LEASE_SECONDS = 300
# DynamoDB's words for an item over 400 KB (ValidationException).
ITEM_TOO_LARGE_MARKERS = ("item size has exceeded", "item size to update has exceeded")


def s(value: str) -> dict[str, str]:
    return {"S": value}


# The values of `:success, :failure, :revoked` in every "not terminal" condition.
TERMINAL_VALUES = {":success": s(states.SUCCESS), ":failure": s(states.FAILURE),
                   ":revoked": s(states.REVOKED)}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_utc(when: datetime) -> str:
    """The records' timestamp format (utc_now's) for a given time."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def list_shard(job_id: str) -> int:
    """The listing shard of a job: its id's last hex digit modulo LIST_SHARDS (0 if none).
    The revoke template computes the same from the UUID's last character."""
    last = job_id[-1:]
    return int(last, 16) % LIST_SHARDS if last and last in "0123456789abcdefABCDEF" else 0


def list_pk(status: str, job_id: str) -> str:
    return f"{status}#{list_shard(job_id)}"


def epoch_ms_iso(millis: int) -> str:
    """Epoch milliseconds (the `submitted_at` header) in the records' timestamp format."""
    return iso_utc(datetime.fromtimestamp(millis / 1000, UTC))


def n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def item_str(item: dict, key: str) -> str | None:
    attr = item.get(key)
    return attr.get("S") if attr else None


def item_num(item: dict, key: str) -> int | None:
    attr = item.get(key)
    return int(attr["N"]) if attr and "N" in attr else None


def projection(attrs: Iterable[str]) -> dict[str, Any]:
    """ProjectionExpression and names for reading only `attrs`."""
    names = {f"#p{number}": attr for number, attr in enumerate(attrs)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


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


def group_page_id(group_id: str, number: int) -> str:
    return f"{GROUP_PREFIX}{group_id}:page:{number}"


def chord_part_id(group_id: str, part_id: str) -> str:
    return f"{CHORD_PREFIX}{group_id}:{part_id}"


def split_pages(text: str) -> list[str]:
    """Cut `text` into pages an item can hold (a character is at most 4 bytes of UTF-8)."""
    size = GROUP_PAGE_CHARS if text.isascii() else GROUP_PAGE_CHARS // 4
    return [text[start:start + size] for start in range(0, len(text), size)] or [""]


# The revoke transition: one UpdateItem, the worker's condition (a finished job stays
# finished). api_shim/templates/revoke_job.request.vtl writes the very same expressions for
# DELETE /jobs/{job_id} (tests/test_revoke.py compares them), so keep the two in step.
REVOKE_ERROR = {"type": "TaskRevokedError", "module": "celery.exceptions",
                "message": "revoked", "args": '["revoked"]'}
REVOKE_EXPRESSION = (
    "SET #status = :revoked, #error = :revoke_error, #revoked_at = :now, #finished_at = :now,"
    " #updated_at = :now, #created_at = if_not_exists(#created_at, :now),"
    " #list_pk = :list_pk")
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

    def __str__(self) -> str:
        if self.revoked:
            return f"job {self.job_id} revoked (was {self.previous})"
        return f"job {self.job_id} not revoked: already {self.status}"


@dataclass(frozen=True)
class ChordCount:
    """A chord's counter as one write left it."""

    done: int
    size: int | None  # announced by set_chord_size, else the header's number of results
    fired: bool
    lease_until: int | None
    duplicate: bool = False  # this part had reported before
    gone: bool = False  # the counter is gone: deleted with its group, or expired


def chord_count(item: dict, duplicate: bool = False) -> ChordCount:
    size = item_num(item, "chord_size")
    return ChordCount(item_num(item, "done") or 0, size if size is not None else
                      item_num(item, "leaves"), "chord_fired_at" in item,
                      item_num(item, "chord_lease"), duplicate, "kind" not in item)


class JobRecords:
    """Writes of the jobs table, each a transition of the job's state machine."""

    def __init__(self, client: Callable[[], Any], table: str, expires_seconds: int | None,
                 run_lease_seconds: int = DEFAULT_RUN_LEASE_SECONDS):
        self._client = client  # a callable: the boto3 client must not cross a fork
        self.table = table
        self.expires_seconds = expires_seconds
        self.run_lease_seconds = run_lease_seconds  # the queue's visibility timeout

    @property
    def client(self):
        return self._client()

    def expires_at(self) -> dict | None:
        if not self.expires_seconds:
            return None
        return n(int(time.time()) + self.expires_seconds)

    # --- reads: strongly consistent, the only ones of the table but the listing's Query ---
    def read(self, job_id: str, *attrs: str) -> dict:
        """One item (GetItem, strongly consistent), only `attrs` if given; {} if none."""
        request: dict[str, Any] = {"TableName": self.table, "Key": {"job_id": s(job_id)},
                                   "ConsistentRead": True}
        if attrs:
            request.update(projection(attrs))
        return self.client.get_item(**request).get("Item") or {}

    def read_many(self, job_ids: Iterable[str], *attrs: str,
                  retry_unprocessed: bool = True) -> dict[str, dict]:
        """{job id: item} by BatchGetItem, 100 keys a call, strongly consistent; keys
        DynamoDB leaves unprocessed (throttling) are asked again with backoff, or, with
        retry_unprocessed=False, left out for the caller's next look."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, dict] = {}
        extra = projection(("job_id", *attrs)) if attrs else {}
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            request: dict | None = {self.table: {
                "Keys": [{"job_id": s(i)} for i in ids[start:start + BATCH_GET_LIMIT]],
                "ConsistentRead": True, **extra}}
            delay = 0.05
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    found[item["job_id"]["S"]] = item
                request = response.get("UnprocessedKeys") or None
                if request and not retry_unprocessed:
                    break
                if request:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return found

    # --- a job's own transitions ---------------------------------------------------
    def transition(self, job_id: str, state: str, *, result_text: str | None = None,
                   error: dict[str, Any] | None = None, traceback: str | None = None,
                   progress_text: str | None = None, facts: dict[str, Any] | None = None,
                   refusal: dict | None = None, result_ref: dict | None = None,
                   holder_only: bool = False) -> bool:
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
        update = self._job_update(state, result_text, error, traceback, progress_text, facts,
                                  result_ref=result_ref)
        condition = self._run_lease(update, state, facts, holder_only)
        try:
            return self._apply(job_id, update, condition, refusal)
        except ClientError as exc:
            if not is_item_too_large(exc):
                raise
            log.error("job %s: DynamoDB refused the %s record as too large: %s", job_id,
                      state, exc)
            fallback = self._job_update(states.FAILURE, None, {
                "type": "ResultTooLarge", "module": "tasks.jobkit.errors",
                "message": f"the job record was refused as too large: {exc}"},
                None, None, facts)
            return self._apply(job_id, fallback,
                               self._run_lease(fallback, states.FAILURE, facts, holder_only))

    def _run_lease(self, update: Update, state: str, facts: dict[str, Any] | None,
                   holder_only: bool = False) -> str:
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
            condition = f"({self._worker_condition}) OR #finish_id = :finish_id"
            if holder_only and token:
                # A delivery that ends its job without running it (its process lost on the
                # last receive, an ETA out of reach) may not end a job another run holds.
                condition = f"({condition}) AND ({self._lease_free(update, token)})"
            return condition
        if token is None:
            return self._worker_condition  # not a worker's delivery: no lease to take
        if state == states.RETRY:
            update.names["#run_token"] = "run_token"
            update.values[":my_run_token"] = s(token)
            return (f"({self._worker_condition}) AND "
                    "(attribute_not_exists(#run_token) OR #run_token = :my_run_token)")
        if state != states.STARTED:
            return self._worker_condition
        update.set("run_lease", n(int(time.time()) + self.run_lease_seconds))
        update.set("run_token", s(token))
        free = [self._lease_free(update, token)]
        retry_of = (facts or {}).get("retry_of")
        if ":retries" in update.values and isinstance(retry_of, str) and retry_of:
            # The retry the holder itself sent (Task.retry sends it before the RETRY write):
            # it takes the lease over from that run only, never from a run that started
            # since (a duplicate that took the lapsed lease while the retry waited).
            update.values[":retry_of"] = s(retry_of)
            free.append("(#run_token = :retry_of AND "
                        "(attribute_not_exists(#retries) OR #retries < :retries))")
        condition = f"({self._worker_condition}) AND ({' OR '.join(free)})"
        if ":retries" in update.values:
            # A delivery of an earlier attempt never starts once a later retry has: the
            # record's `retries` never goes down.
            condition += " AND (attribute_not_exists(#retries) OR #retries <= :retries)"
        return condition

    @staticmethod
    def _lease_free(update: Update, token: str) -> str:
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
        return (f"attribute_not_exists(#run_lease) OR #run_lease < :lease_now OR "
                f"#run_token IN ({', '.join(mine)})")

    def renew_run_lease(self, job_id: str, token: str) -> bool:
        """Push a running job's lease forward (the heartbeat: tasks.worker.lease_heartbeat).

        Only the run that holds it, and only while the job is not finished; False when
        the lease is no longer this run's (the job finished, or retried)."""
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(job_id)},
                UpdateExpression="SET #run_lease = :until",
                ConditionExpression=("#run_token = :token AND "
                                     "NOT (#status IN (:success, :failure, :revoked))"),
                ExpressionAttributeNames={"#run_lease": "run_lease", "#run_token": "run_token",
                                          "#status": "status"},
                ExpressionAttributeValues={
                    ":until": n(int(time.time()) + self.run_lease_seconds), ":token": s(token),
                    **TERMINAL_VALUES})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

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
    _worker_condition = status_condition("finish")
    # Written by the gate: only where no worker has written.
    _gate_condition = status_condition("reject")

    def _apply(self, job_id: str, update: Update, condition: str,
               refusal: dict | None = None) -> bool:
        update.names["#status"] = "status"
        # Every status write moves the job in the listing index (a job item only: sparse).
        update.set("list_pk", s(list_pk(update.values[":status"]["S"], job_id)))
        if "#rejected" in condition:
            update.names["#rejected"] = "rejected"
        update.values.update(TERMINAL_VALUES)
        if ":pending" in condition:
            update.values[":pending"] = s(states.PENDING)
        extra = {} if refusal is None else {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(job_id)},
                UpdateExpression=update.expression(), ConditionExpression=condition,
                ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values,
                **extra)
        except ClientError as exc:
            if is_conditional_failure(exc):
                if refusal is not None:
                    refusal.update(exc.response.get("Item") or {})
                if condition is self._gate_condition:
                    log.info("job %s has a record a worker wrote; the gate leaves it alone",
                             job_id)
                else:
                    log.info("job %s is already %s; a later %s write was ignored", job_id,
                             item_str(refusal or {}, "status") or "finished",
                             update.values[":status"]["S"])
                return False
            raise
        return True

    def _job_update(self, state: str, result_text: str | None, error: dict | None,
                    traceback: str | None, progress_text: str | None,
                    facts: dict[str, Any] | None, *, result_ref: dict | None = None
                    ) -> Update:
        now = utc_now()
        update = Update()
        if state == states.SUCCESS and result_ref is not None:
            update.set("result_ref", result_ref)
            for attr in ("result", "error", "traceback", "progress"):
                update.remove(attr)
        elif state == states.SUCCESS:
            update.set("result", s(result_text if result_text is not None else "null"))
            for attr in ("error", "traceback", "progress"):
                update.remove(attr)
        elif error is not None or state in states.EXCEPTION_STATES:
            # As with Celery's meta, each write replaces the last one's exception and
            # traceback: a RETRY without one (self.retry() with no exc) reads back as None.
            if error is not None:
                update.set("error", error_map(error))
            else:
                update.remove("error")
            if traceback:
                update.set("traceback", s(traceback[-MAX_TRACEBACK_CHARS:]))
            elif state in states.EXCEPTION_STATES:
                update.remove("traceback")
        if state == states.STARTED:
            update.set("started_at", s(now))
        if progress_text is not None and len(progress_text.encode()) <= MAX_PROGRESS_BYTES:
            update.set("progress", s(progress_text))
        elif state == states.STARTED:
            update.remove("progress")  # a start's meta replaces an earlier attempt's progress
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
        submitted = facts.get("submitted_at")  # epoch ms from the message header
        if isinstance(submitted, int) and not isinstance(submitted, bool) \
                and 0 <= submitted < 32_503_680_000_000:  # before the year 3000
            update.set("submitted_at", s(epoch_ms_iso(submitted)), if_absent=True)
        if state in (states.STARTED, *TERMINAL_STATES):
            for attr in ("args", "kwargs", "queue", "parent_id", "root_id", "group_id"):
                value = facts.get(attr)
                if isinstance(value, str) and value:
                    update.set(attr, s(value[:MAX_REPR_CHARS]))

    def forget(self, job_id: str) -> dict:
        """Delete the record; returns it (ALL_OLD), so that a result kept in S3 (its
        `result_ref`) can be deleted too (tasks.results.backend)."""
        return self.client.delete_item(TableName=self.table, Key={"job_id": s(job_id)},
                                       ReturnValues="ALL_OLD").get("Attributes") or {}

    # --- revocation -------------------------------------------------------------------
    def revoke_request(self, job_id: str, *, terminate: str | None = None,
                       now: datetime | None = None) -> dict[str, Any]:
        """The revoke transition's UpdateItem (without its ReturnValues): REVOKED unless
        the record is terminal, with `revoked_at`, and `terminate` (a signal name) when the
        running job is to be stopped by its worker (tasks.worker.revocation)."""
        when = now or datetime.now(UTC)
        expression = REVOKE_EXPRESSION
        names = {f"#{a}": a for a in ("status", "error", "revoked_at", "finished_at",
                                       "updated_at", "created_at", "list_pk")}
        values = {":revoked": s(states.REVOKED), ":success": s(states.SUCCESS),
                  ":failure": s(states.FAILURE), ":revoke_error": error_map(REVOKE_ERROR),
                  ":now": s(iso_utc(when)), ":list_pk": s(list_pk(states.REVOKED, job_id))}
        if self.expires_seconds:
            expression += REVOKE_EXPIRES
            names["#expires_at"] = "expires_at"
            values[":now_s"] = n(int(when.timestamp()))
            values[":ttl"] = n(self.expires_seconds)
        if terminate:
            expression += REVOKE_TERMINATE
            names["#terminate"] = "terminate"
            values[":signal"] = s(terminate)
        return {"TableName": self.table, "Key": {"job_id": s(job_id)},
                "UpdateExpression": expression, "ConditionExpression": REVOKE_CONDITION,
                "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}

    def revoke(self, job_id: str, *, terminate: str | None = None) -> Revocation:
        """Mark the job REVOKED unless it has finished: one conditional UpdateItem, no read.

        A job with no record yet (queued, or waiting for its countdown) is REVOKED too: the
        worker's STARTED write is then refused and the job never runs. A finished job is
        left as it is; the refusal brings its record back (ALL_OLD) to say so."""
        try:
            old = self.client.update_item(
                **self.revoke_request(job_id, terminate=terminate), ReturnValues="UPDATED_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD").get("Attributes") or {}
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            status = item_str(exc.response.get("Item") or {}, "status") or states.PENDING
            log.info("job %s is already %s: not revoked", job_id, status)
            return Revocation(job_id, False, status, status, item_str(
                exc.response.get("Item") or {}, "terminate"))
        previous = item_str(old, "status") or states.PENDING
        log.info("job %s revoked (was %s%s)", job_id, previous,
                 f"; its worker sends it {terminate}" if terminate else "")
        return Revocation(job_id, True, states.REVOKED, previous, terminate)

    def reset_for_redrive(self, job_id: str) -> bool:
        """Forget a FAILURE record so that the job's redriven message can run.

        Only a FAILURE: a running job keeps its record and its lease (a redrive run twice
        sends a duplicate, which the lease refuses), a REVOKED one stays revoked, a SUCCESS
        ran already. True if a record was removed."""
        try:
            self.client.delete_item(
                TableName=self.table, Key={"job_id": s(job_id)},
                ConditionExpression=status_condition("redrive"),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":failure": s(states.FAILURE)})
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
        value = {"M": {key: n(v) if isinstance(v, int) else s(str(v))
                       for key, v in callback.items() if v is not None}}
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(job_id)},
                UpdateExpression="SET #callback = :callback",
                ConditionExpression=(
                    f"({status_condition('callback')}) AND "
                    "(attribute_not_exists(#callback) OR #callback.#state = :pending)"),
                ExpressionAttributeNames={"#callback": "callback", "#status": "status",
                                          "#state": "state"},
                ExpressionAttributeValues={
                    ":callback": value, ":pending": s("pending"),
                    **TERMINAL_VALUES})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # --- groups and chords --------------------------------------------------------
    # A group's JSON is split over page items past GROUP_PAGE_CHARS. A chord has one small
    # counter item (`chord:<group_id>`: how many parts reported, the size Celery announced,
    # the lease of whoever is firing it, and when it fired) and one small item per reported
    # part (`chord:<group_id>:<part_id>`): no item grows with the number of parts.
    def group_key(self, group_id: str) -> dict:
        return {"job_id": s(GROUP_PREFIX + group_id)}

    def chord_key(self, group_id: str) -> dict:
        return {"job_id": s(CHORD_PREFIX + group_id)}

    def save_group(self, group_id: str, result_text: str) -> None:
        """Save a GroupResult's JSON, over several items if it is longer than one page.

        Pages are written before the group item that counts them, so a reader never finds
        the group naming a page that is not there yet."""
        pages = split_pages(result_text)
        expires_at = self.expires_at()
        for number, page in enumerate(pages[1:], start=1):
            item = {"job_id": s(group_page_id(group_id, number)), "kind": s("group_page"),
                    "result": s(page)}
            if expires_at:
                item["expires_at"] = expires_at
            self.client.put_item(TableName=self.table, Item=item)
        update = Update()
        update.set("kind", s("group"))
        update.set("result", s(pages[0]))
        update.set("pages", n(len(pages)))
        update.set("created_at", s(utc_now()), if_absent=True)
        if expires_at:
            update.set("expires_at", expires_at)
        self.client.update_item(
            TableName=self.table, Key=self.group_key(group_id),
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values)

    def delete_group(self, group_id: str) -> None:
        """Delete a group, its pages and its chord counter (the chord can no longer fire)."""
        old = self.client.delete_item(
            TableName=self.table, Key=self.group_key(group_id), ReturnValues="ALL_OLD"
        ).get("Attributes") or {}
        for number in range(1, item_num(old, "pages") or 1):
            self.client.delete_item(TableName=self.table,
                                    Key={"job_id": s(group_page_id(group_id, number))})
        self.client.delete_item(TableName=self.table, Key=self.chord_key(group_id))

    def create_chord(self, group_id: str, leaves: int | None) -> bool:
        """The chord's counter, before any header task is sent. `leaves` (the header's
        results) is the size used until Celery announces one with set_chord_size.

        False if the chord exists: a frozen chord applied again reuses its ids, and
        its parts then report as duplicates, so its body is sent once only."""
        item = {**self.chord_key(group_id), "kind": s("chord"), "done": n(0),
                "created_at": s(utc_now())}
        if leaves is not None:
            item["leaves"] = n(leaves)
        expires_at = self.expires_at()
        if expires_at:
            item["expires_at"] = expires_at
        try:
            self.client.put_item(TableName=self.table, Item=item,
                                 ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if is_conditional_failure(exc):
                log.warning("chord %s exists already: its body is sent once only", group_id)
                return False
            raise
        return True

    def set_chord_size(self, group_id: str, size: int) -> bool:
        """Record how many parts will report (Celery's set_chord_size). False when no chord
        has this id: Celery also announces the sizes of groups that end a chain in a
        header, whose parts report to the enclosing chord."""
        try:
            self.client.update_item(
                TableName=self.table, Key=self.chord_key(group_id),
                UpdateExpression="SET #size = :size", ConditionExpression="attribute_exists(#kind)",
                ExpressionAttributeNames={"#size": "chord_size", "#kind": "kind"},
                ExpressionAttributeValues={":size": n(size)})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def report_chord_part(self, group_id: str, part_id: str, state: str) -> ChordCount:
        """Count a finished part: two small writes, whatever the chord's size.

        The part's own item (written if absent) tells a duplicate report from a first one
        and shows, when the chord fires, which parts have reported. The counter is then
        incremented even for a duplicate: a part that crashed between the two writes must
        still be counted when its message comes back. The counter may therefore run
        ahead, never behind; it only says when to look, and the body is sent only once
        every member's record is finished (tasks.results.backend)."""
        part = {"job_id": s(chord_part_id(group_id, part_id)), "kind": s("chord_part"),
                "part_state": s(state), "reported_at": s(utc_now())}
        expires_at = self.expires_at()
        if expires_at:
            part["expires_at"] = expires_at
        duplicate = False
        try:
            self.client.put_item(TableName=self.table, Item=part,
                                 ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            duplicate = True
        try:
            attributes = self.client.update_item(
                TableName=self.table, Key=self.chord_key(group_id),
                UpdateExpression="ADD #done :one", ConditionExpression="attribute_exists(#kind)",
                ExpressionAttributeNames={"#done": "done", "#kind": "kind"},
                ExpressionAttributeValues={":one": n(1)}, ReturnValues="ALL_NEW")["Attributes"]
        except ClientError as exc:
            if is_conditional_failure(exc):  # deleted, or expired: the chord is gone
                return ChordCount(0, None, fired=False, lease_until=None, duplicate=duplicate,
                                  gone=True)
            raise
        return chord_count(attributes, duplicate=duplicate)

    def claim_chord(self, group_id: str, lease_seconds: int, token: str) -> bool:
        """Take the right to send a chord's body (or its error) for `lease_seconds`.

        The body is sent (with its pre-assigned id) before `chord_fired`; a
        claimer that crashes in between leaves a lease that expires, so the
        next redelivered part sends it: the body is never lost, and at most
        re-sent under its own id. Claiming a chord whose counter is gone leaves
        a marker, so that its error is reported once. The caller's `token` is in the
        condition: a claim whose first attempt was applied but answered with an error
        (botocore then retries it) still succeeds for its own caller."""
        now = int(time.time())
        values = {":until": n(now + lease_seconds), ":now": n(now), ":token": s(token)}
        expression = "SET #lease = :until, #claim = :token"
        expires_at = self.expires_at()
        if expires_at:
            values[":expires"] = expires_at
            expression += ", #expires = if_not_exists(#expires, :expires)"
        try:
            self.client.update_item(
                TableName=self.table, Key=self.chord_key(group_id),
                UpdateExpression=expression,
                ConditionExpression=("attribute_not_exists(#fired) AND "
                                     "(attribute_not_exists(#lease) OR #lease < :now"
                                     " OR #claim = :token)"),
                ExpressionAttributeNames={"#fired": "chord_fired_at", "#lease": "chord_lease",
                                          "#claim": "chord_claim",
                                          **({"#expires": "expires_at"} if expires_at else {})},
                ExpressionAttributeValues=values)
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def release_chord(self, group_id: str, token: str) -> bool:
        """Give a claim back (the chord was not complete after all); only the claimer's."""
        try:
            self.client.update_item(
                TableName=self.table, Key=self.chord_key(group_id),
                UpdateExpression="SET #lease = :zero",
                ConditionExpression="#claim = :token AND attribute_not_exists(#fired)",
                ExpressionAttributeNames={"#lease": "chord_lease", "#claim": "chord_claim",
                                          "#fired": "chord_fired_at"},
                ExpressionAttributeValues={":zero": n(0), ":token": s(token)})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def mark_chord_fired(self, group_id: str) -> None:
        self.client.update_item(
            TableName=self.table, Key=self.chord_key(group_id),
            UpdateExpression="SET #fired = :now REMOVE #lease",
            ExpressionAttributeNames={"#fired": "chord_fired_at", "#lease": "chord_lease"},
            ExpressionAttributeValues={":now": s(utc_now())})

    # --- side-effect leases (tasks.jobkit.once) -------------------------------------
    # A claim carries its caller's token in its own condition, so that botocore's retry of
    # a claim whose first attempt was applied (a 500 or a timeout after the write) succeeds
    # for the same caller instead of finding "someone else holds it".
    def claim_lease(self, key: str, lease_seconds: int, token: str, *,
                    job_id: str | None = None, run: str | None = None) -> LeaseClaim:
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
        condition = ("attribute_not_exists(#lease_state) OR (#lease_state <> :done AND "
                     f"(#lease_until < :now OR #lease_token = :lease_token{takeover}))")
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(LEASE_PREFIX + key)},
                UpdateExpression=update.expression(), ConditionExpression=condition,
                ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
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
            TableName=self.table, Key={"job_id": s(LEASE_PREFIX + key)},
            UpdateExpression="SET #state = :done, #done_at = :now REMOVE #until",
            ExpressionAttributeNames={"#state": "lease_state", "#done_at": "done_at",
                                      "#until": "lease_until"},
            ExpressionAttributeValues={":done": s("done"), ":now": s(utc_now())})

    def release_lease(self, key: str, token: str) -> bool:
        """Give a claim up (the effect failed): the next attempt may claim it at once.
        Only the caller's own claim; False if it is no longer theirs."""
        try:
            self.client.update_item(
                TableName=self.table, Key={"job_id": s(LEASE_PREFIX + key)},
                UpdateExpression="SET #until = :zero",
                ConditionExpression="#state = :claimed AND #token = :token",
                ExpressionAttributeNames={"#until": "lease_until", "#state": "lease_state",
                                          "#token": "lease_token"},
                ExpressionAttributeValues={":zero": n(0), ":claimed": s("claimed"),
                                           ":token": s(token)})
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True


@dataclass(frozen=True)
class LeaseClaim:
    """What claim_lease found: `claimed` (the caller holds it now), or `done` (the effect
    happened), or neither: another live claim holds it until `until` (epoch seconds)."""

    claimed: bool
    done: bool = False
    until: int | None = None

    def __bool__(self) -> bool:
        return self.claimed
