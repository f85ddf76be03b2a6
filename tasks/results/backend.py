"""Celery result backend storing one readable DynamoDB item per job.

Item layout (the job-record contract in DESIGN.md): `job_id` (partition key),
`status`, `task`, `result` (JSON text), `error` {type, message, module},
`traceback`, `progress` (JSON text), `attempts`, `retries`, `worker`, `queue`,
`args`/`kwargs` (reprs), `created_at`, `started_at`, `finished_at`,
`updated_at` (ISO-8601 UTC), `expires_at` (epoch seconds, the TTL attribute),
`parent_id`, `root_id`, `group_id`; while a run holds the job, `run_lease` (epoch
seconds) and `run_token` (tasks.results.run_lease).

Every state change is one conditional UpdateItem: a terminal state is never
overwritten, and no write is preceded by a read. Reads are strongly consistent.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from celery import states
from celery.backends.base import BaseBackend
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, GroupResult, ResultSet, result_from_tuple
from kombu.utils.json import dumps as json_dumps
from kombu.utils.json import loads as json_loads
from kombu.utils.uuid import uuid

from tasks.jobkit.errors import ResultNotSerializable, ResultTooLarge
from tasks.jobkit.public_errors import error_record
from tasks.ops.clients import dynamodb_client, s3_client
from tasks.ops.settings import Settings
from tasks.results import large_objects
from tasks.results.records import (
    CHORD_PREFIX,
    GROUP_PREFIX,
    MAX_RESULT_BYTES,
    ChordCount,
    JobRecords,
    chord_count,
    chord_part_id,
    group_page_id,
    item_num,
    item_str,
)
from tasks.results.revoked_mark import note_revoked, revoked_noted
from tasks.results.run_lease import note_duplicate

log = logging.getLogger(__name__)

RETRYABLE_ERROR_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException",
                         "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable")
# How long one caller may hold the right to send a chord's body before another may:
# this plus the join bound (reading 10,000 records takes 100 BatchGetItem calls).
CHORD_LEASE_SECONDS = 30
# The join bound when result_chord_join_timeout is unset: Celery's own default.
DEFAULT_CHORD_JOIN_SECONDS = 3.0


class DynamoDBJobBackend(BaseBackend):
    """Celery loads this through `result_backend = "tasks.results.backend:DynamoDBJobBackend"`."""

    supports_native_join = True
    supports_autoexpire = True
    persistent = True

    def __init__(self, app, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self.settings = Settings.from_env()
        self.table = self.settings.table_name
        expires = self.app.conf.result_expires
        if isinstance(expires, timedelta):
            expires = expires.total_seconds()
        self.expires_seconds = int(expires) if expires else None
        self._client = None
        self._client_pid: int | None = None
        # A run's lease lasts one visibility timeout: its message is back after that too.
        self.records = JobRecords(lambda: self.client, self.table, self.expires_seconds,
                                  run_lease_seconds=self.settings.visibility_timeout)

    # --- plumbing ---------------------------------------------------------------
    @property
    def client(self):
        # boto3 clients must not cross a fork: prefork children get their own.
        pid = os.getpid()
        if self._client is None or self._client_pid != pid:
            self._client = dynamodb_client(self.settings, validate=False)
            self._client_pid = pid
        return self._client

    def exception_safe_to_retry(self, exc: Exception) -> bool:
        # With result_backend_always_retry, Celery retries these after botocore's own
        # attempts (whose retry quota an outage of a few seconds drains). Every write
        # here is a conditional or idempotent update, so repeating one is safe.
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return True
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return error.get("Code") in RETRYABLE_ERROR_CODES or status >= 500
        return False

    # --- writes: every one a transition of tasks.results.records ------------------
    def _store_result(
        self, task_id, result, state, traceback=None, request=None, **kwargs
    ) -> Any:
        facts = request_facts(request) if request is not None else None
        if state == states.SUCCESS:
            try:
                # allow_nan=False: Infinity/NaN are not JSON, and clients must parse this.
                text = json_dumps(result, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return self._fail(task_id, ResultNotSerializable(f"result is not JSON: {exc}"),
                                  facts)
            if len(text.encode()) > MAX_RESULT_BYTES:
                return self._store_large_result(task_id, text, facts, result)
            self.records.transition(task_id, state, result_text=text, facts=facts)
        elif state in (states.FAILURE, states.RETRY, states.REVOKED):
            if state == states.REVOKED and request is not None and revoked_noted(request):
                return result  # the revoke wrote REVOKED: a second write would be refused
            # No exception (self.retry() without exc, update_state with no meta): no
            # error, read back as None, as Celery's backends do (exception_to_python).
            error = self.error_of(result, request) if result else None
            self.records.transition(task_id, state, error=error, traceback=traceback,
                                    facts=facts)
        elif state in (states.STARTED, states.PENDING, states.RECEIVED):
            # A STARTED write refused by a REVOKED record: the job must not run
            # (tasks.jobkit.task.JobTask.before_start reads the mark).
            refusal: dict = {}
            # Celery's own start meta is the record's `worker`; any other meta (a caller's
            # update_state) is kept as written, as the progress of a custom state is.
            text = None if is_start_meta(result, request) else meta_text(result)
            if not self.records.transition(task_id, state, progress_text=text, facts=facts,
                                           refusal=refusal):
                self.note_refusal(request, refusal, starting=state == states.STARTED)
        else:  # a custom state such as PROGRESS: its meta is the job's progress
            text = meta_text(result)
            refusal = {}
            if not self.records.transition(task_id, state, progress_text=text, facts=facts,
                                           refusal=refusal):
                self.note_refusal(request, refusal)  # a running job was revoked
        return result

    def _store_large_result(self, task_id: str, text: str, facts: dict | None,
                            result: Any) -> Any:
        """A result over what a record holds: its JSON in S3 under this run's own key, the
        record its reference with the checksum. Only the winner of the conditional SUCCESS
        write publishes it where HTTP reads it; a refused finisher removes its copy."""
        bucket = self.settings.bucket_name
        try:
            ref = large_objects.store_result(self.s3, bucket, task_id, uuid(), text)
        except (ClientError, BotoCoreError) as exc:
            log.error("job %s: S3 refused its %d-byte result: %s", task_id, len(text), exc)
            return self._fail(task_id, ResultTooLarge(
                f"result is {len(text.encode())} bytes of JSON, over the {MAX_RESULT_BYTES} a "
                "job record holds (DynamoDB's item limit is 400 KB), and the results bucket "
                f"{bucket} refused it: {exc}"), facts)
        if self.records.transition(task_id, states.SUCCESS, facts=facts,
                                   result_ref=large_objects.result_ref_map(ref)):
            large_objects.publish_result(self.s3, bucket, task_id, text)
        else:
            large_objects.delete(self.s3, ref.bucket, ref.key)
        return result

    @property
    def s3(self):
        return s3_client(self.settings)  # cached per process (tasks.ops.clients)

    @staticmethod
    def note_refusal(request: Any, refusal: dict, *, starting: bool = False) -> None:
        """Mark the request when its job's record refused a write because it is REVOKED,
        or, for a STARTED write, because another run holds it or it finished (a duplicate:
        tasks.results.run_lease)."""
        if request is None or not refusal:
            return
        if item_str(refusal, "status") == states.REVOKED:
            note_revoked(request)
        elif starting and getattr(request, "run_token", None):
            note_duplicate(request, refusal)

    def record_status(self, task_id: str) -> str | None:
        """The record's status alone: one strongly consistent GetItem (JobTask.is_aborted)."""
        return item_str(self.records.read(task_id, "status"), "status")

    def _fail(self, task_id: str, exc: BaseException, facts: dict | None) -> BaseException:
        self.records.transition(task_id, states.FAILURE, error=self.error_of(exc, ours=True),
                                facts=facts)
        return exc

    def error_of(self, result: Any, request: Any = None, *, ours: bool = False
                 ) -> dict[str, Any]:
        """`{type, message, module, args}` of an exception or Celery's exception dict:
        `message` only when public (what HTTP shows), `args` always (what AsyncResult
        rebuilds the exception from): tasks.jobkit.public_errors."""
        if isinstance(result, BaseException):
            result = self.prepare_exception(result, serializer="json")
        return error_record(result, request, ours=ours)

    def record_quietly(self, task_id: str, exc: BaseException, state: str = states.FAILURE,
                       request: Any = None, *, holder_only: bool = False) -> bool:
        """Record `exc` as the job's outcome; log instead of raising, for callers that must
        carry on (shutdown, signal handlers). True if the write was made. `holder_only`:
        not while another run holds the job's lease (a delivery that did not run it)."""
        try:
            return self.records.transition(
                task_id, state, error=self.error_of(exc, ours=True),
                facts=request_facts(request) if request is not None else None,
                holder_only=holder_only)
        except Exception:
            log.exception("could not record %s for job %s", state, task_id)
            return False

    def _forget(self, task_id: str) -> None:
        ref = large_objects.ref_from_item(self.records.forget(task_id))
        if ref is not None:
            large_objects.delete(self.s3, ref.bucket, ref.key)
            large_objects.delete(self.s3, ref.bucket, large_objects.result_key(task_id))

    # --- reads ------------------------------------------------------------------
    def _get_task_meta_for(self, task_id: str) -> dict:
        return self.meta_from_item(task_id, self.records.read(task_id))

    def meta_from_item(self, task_id: str, item: dict | None) -> dict:
        """Celery's task meta of a job record, as Celery's own backends decode it: a
        failure's result is the exception rebuilt by BaseBackend.exception_to_python."""
        if not item or "status" not in item:
            return {"task_id": task_id, "status": states.PENDING, "result": None,
                    "traceback": None, "children": []}
        status = item_str(item, "status")
        result: Any = None
        # kombu's JSON, written and read as Celery's backends do: dates, times, decimals,
        # UUIDs and bytes come back as themselves.
        if status == states.SUCCESS and "result" in item:
            result = json_loads(item_str(item, "result"))
        elif status == states.SUCCESS and "result_ref" in item:  # kept in S3: one GetObject
            result = large_objects.load_result(self.s3, large_objects.ref_from_item(item))
        elif status in states.EXCEPTION_STATES and "error" in item:
            error = item["error"].get("M", {})
            result = {
                "exc_type": item_str(error, "type") or "Exception",
                "exc_message": exception_args(error),
                "exc_module": item_str(error, "module"),
            }
        elif status in states.EXCEPTION_STATES:
            result = None  # stored without an exception: Celery's backends give None back
        elif "progress" in item:  # a custom state's meta, or a STARTED meta of a caller's
            result = json_loads(item_str(item, "progress"))
        elif status == states.STARTED:
            result = {"hostname": item_str(item, "worker")}  # Celery's start meta, less pid
        meta = {
            "task_id": task_id,
            "status": status,
            "result": result,
            "traceback": item_str(item, "traceback"),
            "children": [],
            "date_done": item_str(item, "finished_at"),
            "name": item_str(item, "task"),
            "args": arguments_from_repr(item_str(item, "args"), list),
            "kwargs": arguments_from_repr(item_str(item, "kwargs"), dict),
            "worker": item_str(item, "worker"),
            "retries": item_num(item, "retries"),
            "queue": item_str(item, "queue"),
            "attempts": item_num(item, "attempts"),
        }
        for link in ("group_id", "parent_id"):  # as Celery's backends, only when known
            if item_str(item, link):
                meta[link] = item_str(item, link)
        return self.meta_from_decoded(meta)

    def mget_items(self, task_ids: Iterable[str]) -> dict[str, dict]:
        """Strongly consistent BatchGetItem, 100 keys a call, retrying unprocessed keys."""
        return self.records.read_many(task_ids)

    def get_many(self, task_ids, timeout=None, interval=0.5, no_ack=True, on_message=None,
                 on_interval=None, max_iterations=None, READY_STATES=states.READY_STATES
                 ) -> Iterator[tuple[str, dict]]:
        interval = 0.5 if interval is None else interval
        pending = set(task_ids)
        for task_id in list(pending):
            cached = self._cache.get(task_id)
            if cached and cached["status"] in READY_STATES:
                pending.discard(task_id)
                yield task_id, cached
        deadline = None if timeout is None else time.monotonic() + timeout
        iterations = 0
        while pending:
            items = self.mget_items(pending)
            for task_id, item in items.items():
                meta = self.meta_from_item(task_id, item)
                if meta["status"] in READY_STATES:
                    self._cache[task_id] = meta
                    pending.discard(task_id)
                    if on_message is not None:
                        on_message(meta)
                    yield task_id, meta
            if not pending:
                break
            if deadline is not None and time.monotonic() >= deadline:
                # Celery's own, as its backends raise: not the built-in TimeoutError,
                # which `except celery.exceptions.TimeoutError` does not catch.
                raise CeleryTimeoutError(f"Operation timed out ({timeout})")
            if on_interval:
                on_interval()
            nap = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(nap, 0))
            iterations += 1
            if max_iterations and iterations >= max_iterations:
                break

    # --- groups and chords ------------------------------------------------------
    # How a chord completes (the README's "Chords" section): every part that ends counts
    # itself with two small writes (records.report_chord_part); the part that brings the
    # counter to the chord's size (Celery announces it with set_chord_size) claims the
    # chord, reads every member's record with BatchGetItem, and sends the body with their
    # results, or fails it with a ChordError. Nothing waits on a result it polls for, so
    # no chord shape can hold a worker process: the longest wait is chord_join_bound().
    def _save_group(self, group_id: str, result: GroupResult) -> GroupResult:
        self.records.save_group(group_id, json_dumps(result.as_tuple()))
        return result

    def _restore_group(self, group_id: str) -> dict | None:
        item = self.records.read(GROUP_PREFIX + group_id)
        if "result" not in item:
            return None
        text = self.group_text(group_id, item)
        if text is None:
            return None
        return {
            "group_id": group_id,
            "result": result_from_tuple(json.loads(text), self.app),
            "date_done": item_str(item, "created_at"),
        }

    def group_text(self, group_id: str, item: dict) -> str | None:
        """A saved group's JSON, its pages put back together; None if a page is gone."""
        pages = item_num(item, "pages") or 1
        ids = [group_page_id(group_id, number) for number in range(1, pages)]
        found = self.mget_items(ids) if ids else {}
        texts = [item_str(item, "result") or ""]
        for page_id in ids:
            if page_id not in found:
                log.warning("group %s: page %s is gone", group_id, page_id)
                return None
            texts.append(item_str(found[page_id], "result") or "")
        return "".join(texts)

    def _delete_group(self, group_id: str) -> None:
        self.records.delete_group(group_id)

    def apply_chord(self, header_result_args, body, **kwargs) -> None:
        self.ensure_chords_allowed()
        header_result = self.app.GroupResult(*header_result_args)
        header_result.save(backend=self)
        self.records.create_chord(header_result.id, len(chord_leaves(header_result)))

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        # Celery calls this before it sends the header's last task, so the part that
        # ends last always sees the size. It also calls it for a group that ends a chain
        # in a header: that group is no chord (its parts report to the enclosing one).
        if not self.records.set_chord_size(group_id, int(chord_size)):
            log.debug("set_chord_size(%s, %s): no chord with that id", group_id, chord_size)

    def chord_join_bound(self) -> float:
        """The longest a chord's completion waits for a member's record: Celery's
        result_chord_join_timeout (3 s by default), never unbounded."""
        timeout = self.app.conf.result_chord_join_timeout
        return float(timeout) if timeout and timeout > 0 else DEFAULT_CHORD_JOIN_SECONDS

    def chord_lease_seconds(self) -> int:
        return int(self.chord_join_bound()) + CHORD_LEASE_SECONDS

    def on_chord_part_return(self, request, state, result, **kwargs) -> None:
        group_id = getattr(request, "group", None)
        if not group_id or not getattr(request, "chord", None):
            return
        callback = maybe_signature(request.chord, app=self.app)
        count = self.records.report_chord_part(group_id, request.id, state)
        if count.gone:
            self.end_chord(group_id, callback, ChordError(
                f"chord {group_id} can no longer complete: its record is gone (its "
                "GroupResult was deleted, or it expired after result_expires)"))
            return
        if count.fired:
            return
        if state in states.PROPAGATE_STATES:
            # Fail the body at once (Celery names the member that failed first in time),
            # going by the member's record: a duplicate delivery cannot change its outcome.
            meta = self.get_task_meta(request.id, cache=False)
            if meta["status"] in states.PROPAGATE_STATES:
                if not self.end_chord(group_id, callback, dependency_error(
                        request.id, self.exception_to_python(meta["result"]))):
                    self.complete_chord(group_id, callback, count)
                return
        if count.size is not None and count.done >= count.size:
            self.complete_chord(group_id, callback, count)

    def end_chord(self, group_id: str, callback, error: ChordError) -> bool:
        """Fail the body with `error` unless someone else holds or has fired the chord."""
        if not self.records.claim_chord(group_id, self.chord_lease_seconds(), uuid()):
            return False
        self.finish_chord(group_id, callback, None, error)
        return True

    def complete_chord(self, group_id: str, callback, seen: ChordCount) -> None:
        """Claim the chord and send its body, or its error, if every member has ended."""
        token = uuid()
        lease = self.chord_lease_seconds()
        if not self.records.claim_chord(group_id, lease, token):
            # Someone holds it. A live holder looks at the counter again after it lets go,
            # so it sees this part; but a duplicate may be the redelivery of a holder that
            # died, whose lease nobody else would wait out.
            if not seen.duplicate or not self.await_chord_lease(group_id, lease):
                return
            if not self.records.claim_chord(group_id, lease, token):
                return
        done = seen.done
        while True:
            outcome = self.chord_outcome(group_id)
            if outcome is not None:
                self.finish_chord(group_id, callback, *outcome)
                return
            # The counter ran ahead of the members (a duplicate report counts again):
            # let go, and look again only if a part reported meanwhile.
            self.records.release_chord(group_id, token)
            now = self.read_chord(group_id)
            if now is None or now.fired or now.done <= done:
                return
            done = now.done
            if not self.records.claim_chord(group_id, lease, token):
                return

    def chord_outcome(self, group_id: str) -> tuple[list | None, ChordError | None] | None:
        """(values, None) when every member succeeded, (None, error) when the chord cannot
        complete, None while a member has not ended yet. Bounded: BatchGetItem of the
        members' records, and at most chord_join_bound() of waiting for records that their
        members reported finished."""
        header = self.restore_group(group_id, cache=False)
        if header is None:
            return None, ChordError(f"GroupResult {group_id} no longer exists")
        ids = [leaf.id for leaf in chord_leaves(header)]
        metas = self.read_metas(ids)
        unfinished = [i for i in ids if metas[i]["status"] not in states.READY_STATES]
        if unfinished and not self.failed_members(ids, metas):
            parts = self.mget_items([chord_part_id(group_id, i) for i in unfinished])
            if len(parts) < len(unfinished):
                return None
            # Each reported its end after its record was written: wait a little, then
            # give up on records that are gone (forgotten, expired, or never stored).
            deadline = time.monotonic() + self.chord_join_bound()
            while unfinished and time.monotonic() < deadline:
                time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
                metas.update(self.read_metas(unfinished))
                unfinished = [i for i in unfinished
                              if metas[i]["status"] not in states.READY_STATES]
            if unfinished and not self.failed_members(ids, metas):
                member = unfinished[0]
                return None, ChordError(
                    f"Dependency {member} ended but its result record is "
                    f"{'missing' if metas[member]['status'] == states.PENDING else 'unfinished'}"
                    f" after {self.chord_join_bound():g}s (chord members must not ignore "
                    f"their results; {len(unfinished)} of {len(ids)} members affected)")
        failed = self.failed_members(ids, metas)
        if failed:
            first = min(failed, key=lambda meta: meta.get("date_done") or "")
            return None, dependency_error(first["task_id"],
                                          self.exception_to_python(first["result"]))
        return chord_values(header.results, metas), None

    @staticmethod
    def failed_members(ids: list[str], metas: dict[str, dict]) -> list[dict]:
        return [metas[i] for i in ids if metas[i]["status"] in states.PROPAGATE_STATES]

    def read_metas(self, task_ids: list[str]) -> dict[str, dict]:
        items = self.mget_items(task_ids)
        return {task_id: self.meta_from_item(task_id, items.get(task_id)) for task_id in task_ids}

    def read_chord(self, group_id: str) -> ChordCount | None:
        item = self.records.read(CHORD_PREFIX + group_id)
        return chord_count(item) if item else None

    def await_chord_lease(self, group_id: str, lease: int) -> bool:
        """Wait (at most `lease` seconds) for another's claim to lapse; False if it fired."""
        deadline = time.monotonic() + lease + 1
        while time.monotonic() < deadline:
            now = self.read_chord(group_id)
            if now is None or now.fired:
                return False
            if not now.lease_until or now.lease_until < time.time():
                return True
            time.sleep(1.0)
        return False

    def finish_chord(self, group_id: str, callback, values: list | None,
                     error: ChordError | None) -> None:
        if error is None:
            try:
                # The body keeps the id Celery gave it when the chord was built: sent
                # before the chord is marked fired, so a crash in between re-sends it
                # under the same id instead of losing it.
                self.send_chord_body(callback, values)
            except Exception as exc:
                error = ChordError(f"Callback error: {exc!r}")
                error.__cause__ = exc
        if error is not None:
            log.warning("chord %s failed: %s", group_id, error)
            try:
                raise error  # Celery stores the error with the traceback of the stack
            except ChordError as exc:
                self.chord_error_from_stack(callback, exc)
        self.records.mark_chord_fired(group_id)

    def send_chord_body(self, callback, values: list) -> None:
        callback.delay(values)


def chord_leaves(header: ResultSet) -> list[AsyncResult]:
    """The results a chord waits for, in order: a group that ends a chain in the header
    is one result holding its members' results (Celery does not unroll it)."""
    leaves: list[AsyncResult] = []
    for node in header.results:
        if isinstance(node, ResultSet):
            leaves.extend(chord_leaves(node))
        else:
            leaves.append(node)
    return leaves


def chord_values(nodes: Iterable, metas: dict[str, dict]) -> list:
    """The body's argument: each header result's value, a nested group's as a list."""
    return [chord_values(node.results, metas) if isinstance(node, ResultSet)
            else metas[node.id]["result"] for node in nodes]


def dependency_error(task_id: str, exc: Any) -> ChordError:
    """Celery's wording: `Dependency <id> raised <exc!r>`, the member's error as the cause."""
    error = ChordError(f"Dependency {task_id} raised {exc!r}")
    if isinstance(exc, BaseException):
        error.__cause__ = exc
    return error


# Celery cuts argsrepr/kwargsrepr at 1,024 characters (and 3 levels deep, as `...`): a
# repr that long may have been cut, so it is not taken for the arguments.
TRUSTED_REPR_CHARS = 1000


def arguments_from_repr(text: str | None, kind: type) -> Any:
    """AsyncResult.args/kwargs from the record's repr (JSON values only, so literal_eval
    reads it back); a repr that may have been cut, or set by the caller (argsrepr=...),
    stays the text it is."""
    if text is None or len(text) >= TRUSTED_REPR_CHARS:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    if kind is list and isinstance(value, tuple):
        value = list(value)
    return value if isinstance(value, kind) and not has_ellipsis(value) else text


def has_ellipsis(value: Any) -> bool:
    """saferepr writes `...` for what is nested too deep: not the arguments then."""
    if value is Ellipsis:
        return True
    if isinstance(value, dict):
        return any(has_ellipsis(k) or has_ellipsis(v) for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return any(has_ellipsis(v) for v in value)
    return False


def is_start_meta(meta: Any, request: Any) -> bool:
    """Whether `meta` is what Celery's worker stores as a job starts, `{pid, hostname}` of
    the request's own worker (celery.app.trace): the record's `worker` says it already."""
    hostname = getattr(request, "hostname", None)
    return (isinstance(meta, dict) and set(meta) == {"pid", "hostname"}
            and isinstance(hostname, str) and meta["hostname"] == hostname)


def meta_text(meta: Any) -> str:
    """A state's meta as the record's `progress` (JSON text); what is not JSON, its repr."""
    try:
        return json_dumps(meta)
    except (TypeError, ValueError):
        return json_dumps({"message": repr(meta)})


def exception_args(error: dict) -> list:
    """The exception's arguments as stored, so it is rebuilt equal to the one raised."""
    stored = item_str(error, "args")
    if stored:
        try:
            args = json_loads(stored)
        except ValueError:
            args = None
        if isinstance(args, list):
            return args
    return [item_str(error, "message") or ""]


def request_facts(request: Any) -> dict[str, Any]:
    """What a job record keeps of a Celery request (or any object with those names)."""
    facts: dict[str, Any] = {}
    name = getattr(request, "task", None) or getattr(request, "name", None)
    if isinstance(name, str):
        facts["task"] = name
    for attr, source in (("attempts", "delivery_count"), ("retries", "retries")):
        value = getattr(request, source, None)
        if isinstance(value, int):
            facts[attr] = value
    for attr, source in (("worker", "hostname"), ("args", "argsrepr"), ("kwargs", "kwargsrepr"),
                         ("parent_id", "parent_id"), ("root_id", "root_id"),
                         ("group_id", "group"), ("run_token", "run_token"),
                         ("retry_of", "retry_of")):
        value = getattr(request, source, None)
        if isinstance(value, str):
            facts[attr] = value
    submitted = getattr(request, "submitted_at", None)  # a header: epoch milliseconds
    if isinstance(submitted, int) and not isinstance(submitted, bool):
        facts["submitted_at"] = submitted
    delivery = getattr(request, "delivery_info", None) or {}
    if isinstance(delivery, dict) and delivery.get("routing_key"):
        facts["queue"] = str(delivery["routing_key"])
    return facts
