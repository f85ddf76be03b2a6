"""Celery result backend storing one readable DynamoDB item per job.

Item layout (the job-record contract in DESIGN.md): `job_id` (partition key),
`status`, `task`, `result` (JSON text), `error` {type, message, module},
`traceback`, `progress` (JSON text), `attempts`, `retries`, `worker`, `queue`,
`args`/`kwargs` (reprs), `created_at`, `started_at`, `finished_at`,
`updated_at` (ISO-8601 UTC), `expires_at` (epoch seconds, the TTL attribute),
`parent_id`, `root_id`, `group_id`.

Every state change is one conditional UpdateItem: a terminal state is never
overwritten, and no write is preceded by a read. Reads are strongly consistent.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from celery import states
from celery.backends.base import BaseBackend
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import GroupResult, allow_join_result, result_from_tuple
from kombu.utils.json import dumps as json_dumps

from tasks.jobkit.errors import ResultNotSerializable, ResultTooLarge
from tasks.ops.clients import dynamodb_client
from tasks.ops.settings import Settings
from tasks.results.records import (
    GROUP_PREFIX,
    MAX_RESULT_BYTES,
    JobRecords,
    item_num,
    item_str,
    s,
)

log = logging.getLogger(__name__)

BATCH_GET_LIMIT = 100
RETRYABLE_ERROR_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException",
                         "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable")
# How long one caller may hold the right to send a chord's body before another may.
CHORD_LEASE_SECONDS = 60


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
        self.records = JobRecords(lambda: self.client, self.table, self.expires_seconds)

    # --- plumbing ---------------------------------------------------------------
    @property
    def client(self):
        # boto3 clients must not cross a fork: prefork children get their own.
        pid = os.getpid()
        if self._client is None or self._client_pid != pid:
            self._client = dynamodb_client(self.settings)
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
            size = len(text.encode())
            if size > MAX_RESULT_BYTES:
                return self._fail(task_id, ResultTooLarge(
                    f"result is {size} bytes of JSON; a job record holds at most "
                    f"{MAX_RESULT_BYTES} (DynamoDB's item limit is 400 KB). "
                    "Store large outputs elsewhere (S3) and return a reference."), facts)
            self.records.transition(task_id, state, result_text=text, facts=facts)
        elif state in (states.FAILURE, states.RETRY, states.REVOKED):
            self.records.transition(task_id, state, error=self.error_of(result),
                                    traceback=traceback, facts=facts)
        elif state in (states.STARTED, states.PENDING, states.RECEIVED):
            self.records.transition(task_id, state, facts=facts)
        else:  # a custom state such as PROGRESS: its meta is the job's progress
            try:
                text = json_dumps(result)
            except (TypeError, ValueError):
                text = json_dumps({"message": repr(result)})
            self.records.transition(task_id, state, progress_text=text, facts=facts)
        return result

    def _fail(self, task_id: str, exc: BaseException, facts: dict | None) -> BaseException:
        self.records.transition(task_id, states.FAILURE, error=self.error_of(exc), facts=facts)
        return exc

    def error_of(self, result: Any) -> dict[str, Any]:
        """`{type, message, module, args}` of an exception or Celery's exception dict."""
        if isinstance(result, BaseException):
            result = self.prepare_exception(result, serializer="json")
        if isinstance(result, dict) and "exc_type" in result:
            raw = result.get("exc_message")
            args = list(raw) if isinstance(raw, list | tuple) else [raw]
            message = args[0] if len(args) == 1 else ", ".join(map(str, args))
            try:
                args_text = json_dumps(args)
            except (TypeError, ValueError):
                args_text = None
            return {"type": result["exc_type"], "message": "" if message is None else message,
                    "module": result.get("exc_module"), "args": args_text}
        return {"type": type(result).__name__, "message": str(result)}

    def record_quietly(self, task_id: str, exc: BaseException, state: str = states.FAILURE,
                       request: Any = None) -> bool:
        """Record `exc` as the job's outcome; log instead of raising, for callers that must
        carry on (shutdown, signal handlers). True if the write was made."""
        try:
            return self.records.transition(
                task_id, state, error=self.error_of(exc),
                facts=request_facts(request) if request is not None else None)
        except Exception:
            log.exception("could not record %s for job %s", state, task_id)
            return False

    def _forget(self, task_id: str) -> None:
        self.records.forget(task_id)

    # --- reads ------------------------------------------------------------------
    def _get_task_meta_for(self, task_id: str) -> dict:
        item = self.client.get_item(
            TableName=self.table, Key={"job_id": s(task_id)}, ConsistentRead=True
        ).get("Item")
        return self.meta_from_item(task_id, item)

    def meta_from_item(self, task_id: str, item: dict | None) -> dict:
        if not item or "status" not in item:
            return {"task_id": task_id, "status": states.PENDING, "result": None,
                    "traceback": None, "children": []}
        status = item_str(item, "status")
        result: Any = None
        if status == states.SUCCESS and "result" in item:
            result = json.loads(item_str(item, "result"))
        elif status in (states.FAILURE, states.RETRY, states.REVOKED):
            error = item.get("error", {}).get("M", {})
            result = {
                "exc_type": item_str(error, "type") or "Exception",
                "exc_message": exception_args(error),
                "exc_module": item_str(error, "module"),
            }
        elif status == states.STARTED:
            result = {"hostname": item_str(item, "worker")}
        elif "progress" in item:
            result = json.loads(item_str(item, "progress"))
        return {
            "task_id": task_id,
            "status": status,
            "result": result,
            "traceback": item_str(item, "traceback"),
            "children": [],
            "date_done": item_str(item, "finished_at"),
            "name": item_str(item, "task"),
            "worker": item_str(item, "worker"),
            "retries": item_num(item, "retries"),
            "queue": item_str(item, "queue"),
            "attempts": item_num(item, "attempts"),
        }

    def mget_items(self, task_ids: Iterable[str]) -> dict[str, dict]:
        """Strongly consistent BatchGetItem, 100 keys a call, retrying unprocessed keys."""
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, dict] = {}
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            request = {self.table: {
                "Keys": [{"job_id": s(i)} for i in ids[start:start + BATCH_GET_LIMIT]],
                "ConsistentRead": True,
            }}
            delay = 0.05
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    found[item["job_id"]["S"]] = item
                request = response.get("UnprocessedKeys") or None
                if request:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return found

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
                raise TimeoutError(f"Operation timed out ({timeout})")
            if on_interval:
                on_interval()
            nap = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(nap, 0))
            iterations += 1
            if max_iterations and iterations >= max_iterations:
                break

    # --- groups and chords ------------------------------------------------------
    def _save_group(self, group_id: str, result: GroupResult) -> GroupResult:
        self.records.save_group(group_id, json_dumps(result.as_tuple()))
        return result

    def _restore_group(self, group_id: str) -> dict | None:
        item = self.client.get_item(
            TableName=self.table, Key={"job_id": s(GROUP_PREFIX + group_id)},
            ConsistentRead=True
        ).get("Item")
        if not item or "result" not in item:
            return None
        return {
            "group_id": group_id,
            "result": result_from_tuple(json.loads(item["result"]["S"]), self.app),
            "date_done": item_str(item, "created_at"),
        }

    def _delete_group(self, group_id: str) -> None:
        self.records.delete_group(group_id)

    def apply_chord(self, header_result_args, body, **kwargs) -> None:
        self.ensure_chords_allowed()
        header_result = self.app.GroupResult(*header_result_args)
        header_result.save(backend=self)

    def on_chord_part_return(self, request, state, result, **kwargs) -> None:
        group_id = getattr(request, "group", None)
        if not group_id or not getattr(request, "chord", None):
            return
        callback = maybe_signature(request.chord, app=self.app)
        deps = GroupResult.restore(group_id, backend=self)
        if deps is None:
            self.chord_error_from_stack(callback, ChordError(f"group {group_id} is gone"))
            return
        done = self.records.add_chord_part(group_id, request.id)
        size = request.chord.get("chord_size") or len(deps)
        if done < size or not self.records.claim_chord(group_id, CHORD_LEASE_SECONDS):
            return
        join = deps.join_native if deps.supports_native_join else deps.join
        try:
            with allow_join_result():
                values = join(timeout=self.app.conf.result_chord_join_timeout, propagate=True)
        except Exception as exc:
            self.chord_error_from_stack(callback, ChordError(f"a chord member failed: {exc!r}"))
            self.records.mark_chord_fired(group_id)
            return
        try:
            # The body keeps the id Celery gave it when the chord was built: sent
            # before the chord is marked fired, so a crash in between re-sends it
            # under the same id instead of losing it.
            callback.delay(values)
        except Exception as exc:
            self.chord_error_from_stack(callback, ChordError(f"chord callback failed: {exc!r}"))
        self.records.mark_chord_fired(group_id)


def exception_args(error: dict) -> list:
    """The exception's arguments as stored, so it is rebuilt equal to the one raised."""
    stored = item_str(error, "args")
    if stored:
        try:
            args = json.loads(stored)
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
                         ("group_id", "group")):
        value = getattr(request, source, None)
        if isinstance(value, str):
            facts[attr] = value
    delivery = getattr(request, "delivery_info", None) or {}
    if isinstance(delivery, dict) and delivery.get("routing_key"):
        facts["queue"] = str(delivery["routing_key"])
    return facts
