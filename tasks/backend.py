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
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from celery import states
from celery.backends.base import BaseBackend
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import GroupResult, allow_join_result, result_from_tuple
from kombu.utils.json import dumps as json_dumps

from tasks.aws import dynamodb_client
from tasks.errors import ResultNotSerializable, ResultTooLarge
from tasks.settings import Settings

log = logging.getLogger(__name__)

TERMINAL_STATES = (states.SUCCESS, states.FAILURE, states.REVOKED)
# DynamoDB items hold 400 KB; keep room for the other attributes.
MAX_RESULT_BYTES = 350_000
MAX_TRACEBACK_CHARS = 16_000
MAX_PROGRESS_BYTES = 16_000
GROUP_PREFIX = "group:"
BATCH_GET_LIMIT = 100
RETRYABLE_ERROR_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException",
                         "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _str(item: dict, key: str) -> str | None:
    attr = item.get(key)
    return attr.get("S") if attr else None


def _num(item: dict, key: str) -> int | None:
    attr = item.get(key)
    return int(attr["N"]) if attr and "N" in attr else None


class _Update:
    """Builds one UpdateItem expression from named assignments."""

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


class DynamoDBJobBackend(BaseBackend):
    """Celery loads this through `result_backend = "tasks.backend:DynamoDBJobBackend"`."""

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

    # --- plumbing ---------------------------------------------------------------
    @property
    def client(self):
        # boto3 clients must not cross a fork: prefork children get their own.
        pid = os.getpid()
        if self._client is None or self._client_pid != pid:
            self._client = dynamodb_client(self.settings)
            self._client_pid = pid
        return self._client

    def _expires_at(self) -> dict | None:
        if not self.expires_seconds:
            return None
        return _n(int(time.time()) + self.expires_seconds)

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

    # --- writes -----------------------------------------------------------------
    def _store_result(
        self, task_id, result, state, traceback=None, request=None, **kwargs
    ) -> Any:
        update = self._update_for(task_id, result, state, traceback, request)
        try:
            self._conditional_update(task_id, update)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                raise
            # Most often an item over 400 KB: record that instead of crash-looping.
            log.error("job %s: DynamoDB refused the %s record: %s", task_id, state, exc)
            fallback = self._update_for(
                task_id,
                self._exception_dict(ResultTooLarge(f"the job record was refused: {exc}")),
                states.FAILURE,
                None,
                request,
            )
            self._conditional_update(task_id, fallback)
        return result

    def _conditional_update(self, task_id: str, update: _Update) -> bool:
        """Apply `update` unless the job is already terminal; True if it was applied."""
        update.names["#status"] = "status"
        update.values.update(
            {":success": _s(states.SUCCESS), ":failure": _s(states.FAILURE),
             ":revoked": _s(states.REVOKED)}
        )
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"job_id": _s(task_id)},
                UpdateExpression=update.expression(),
                ConditionExpression=(
                    "attribute_not_exists(#status)"
                    " OR NOT (#status IN (:success, :failure, :revoked))"
                ),
                ExpressionAttributeNames=update.names,
                ExpressionAttributeValues=update.values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                log.info("job %s is already finished; a later write was ignored", task_id)
                return False
            raise
        return True

    def _update_for(self, task_id, result, state, traceback, request) -> _Update:
        now = utc_now()
        update = _Update()
        if state == states.SUCCESS:
            try:
                # allow_nan=False: Infinity/NaN are not JSON, and clients must parse this.
                text = json_dumps(result, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return self._update_for(
                    task_id,
                    self._exception_dict(ResultNotSerializable(f"result is not JSON: {exc}")),
                    states.FAILURE, None, request,
                )
            size = len(text.encode())
            if size > MAX_RESULT_BYTES:
                return self._update_for(
                    task_id,
                    self._exception_dict(ResultTooLarge(
                        f"result is {size} bytes of JSON; a job record holds at most "
                        f"{MAX_RESULT_BYTES} (DynamoDB's item limit is 400 KB). "
                        "Store large outputs elsewhere (S3) and return a reference."
                    )),
                    states.FAILURE, None, request,
                )
            update.set("result", _s(text))
            update.remove("error")
            update.remove("traceback")
            update.remove("progress")
        elif state in (states.FAILURE, states.RETRY, states.REVOKED):
            update.set("error", {"M": self._error_map(result)})
            if traceback:
                update.set("traceback", _s(traceback[-MAX_TRACEBACK_CHARS:]))
        elif state == states.STARTED:
            update.set("started_at", _s(now))
        elif state not in (states.PENDING, states.RECEIVED):
            # A custom state such as PROGRESS: its meta is the job's progress.
            try:
                text = json_dumps(result)
            except (TypeError, ValueError):
                text = json_dumps({"message": repr(result)})
            if len(text.encode()) <= MAX_PROGRESS_BYTES:
                update.set("progress", _s(text))
        if state in TERMINAL_STATES:
            update.set("finished_at", _s(now))
        update.set("status", _s(state))
        update.set("updated_at", _s(now))
        update.set("created_at", _s(now), if_absent=True)
        expires_at = self._expires_at()
        if expires_at:
            update.set("expires_at", expires_at)
        if request is not None and state != states.PENDING:
            self._add_request_facts(update, request, state)
        return update

    def _add_request_facts(self, update: _Update, request, state: str) -> None:
        name = getattr(request, "task", None) or getattr(request, "name", None)
        if isinstance(name, str):
            update.set("task", _s(name))
        count = getattr(request, "delivery_count", None)
        if isinstance(count, int):
            update.set("attempts", _n(count))
        retries = getattr(request, "retries", None)
        if isinstance(retries, int):
            update.set("retries", _n(retries))
        hostname = getattr(request, "hostname", None)
        if isinstance(hostname, str):
            update.set("worker", _s(hostname))
        if state in (states.STARTED, *TERMINAL_STATES):
            for attr, source in (("args", "argsrepr"), ("kwargs", "kwargsrepr")):
                value = getattr(request, source, None)
                if isinstance(value, str) and value:
                    update.set(attr, _s(value[:2000]))
            delivery = getattr(request, "delivery_info", None) or {}
            if isinstance(delivery, dict) and delivery.get("routing_key"):
                update.set("queue", _s(str(delivery["routing_key"])))
            for attr, source in (("parent_id", "parent_id"), ("root_id", "root_id"),
                                 ("group_id", "group")):
                value = getattr(request, source, None)
                if isinstance(value, str) and value:
                    update.set(attr, _s(value))

    def _exception_dict(self, exc: BaseException) -> dict:
        return self.prepare_exception(exc, serializer="json")

    @staticmethod
    def _error_map(result: Any) -> dict:
        if isinstance(result, dict) and "exc_type" in result:
            message = result.get("exc_message")
            if isinstance(message, list | tuple):
                message = message[0] if len(message) == 1 else ", ".join(map(str, message))
            error = {"type": _s(str(result["exc_type"])), "message": _s(str(message or ""))}
            if result.get("exc_module"):
                error["module"] = _s(str(result["exc_module"]))
            return error
        return {"type": _s(type(result).__name__), "message": _s(str(result))}

    def _forget(self, task_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"job_id": _s(task_id)})

    # --- reads ------------------------------------------------------------------
    def _get_task_meta_for(self, task_id: str) -> dict:
        item = self.client.get_item(
            TableName=self.table, Key={"job_id": _s(task_id)}, ConsistentRead=True
        ).get("Item")
        return self.meta_from_item(task_id, item)

    def meta_from_item(self, task_id: str, item: dict | None) -> dict:
        if not item or "status" not in item:
            return {"task_id": task_id, "status": states.PENDING, "result": None,
                    "traceback": None, "children": []}
        status = _str(item, "status")
        result: Any = None
        if status == states.SUCCESS and "result" in item:
            result = json.loads(_str(item, "result"))
        elif status in (states.FAILURE, states.RETRY, states.REVOKED):
            error = item.get("error", {}).get("M", {})
            result = {
                "exc_type": _str(error, "type") or "Exception",
                "exc_message": [_str(error, "message") or ""],
                "exc_module": _str(error, "module"),
            }
        elif status == states.STARTED:
            result = {"hostname": _str(item, "worker")}
        elif "progress" in item:
            result = json.loads(_str(item, "progress"))
        return {
            "task_id": task_id,
            "status": status,
            "result": result,
            "traceback": _str(item, "traceback"),
            "children": [],
            "date_done": _str(item, "finished_at"),
            "name": _str(item, "task"),
            "worker": _str(item, "worker"),
            "retries": _num(item, "retries"),
            "queue": _str(item, "queue"),
            "attempts": _num(item, "attempts"),
        }

    def mget_items(self, task_ids: Iterable[str]) -> dict[str, dict]:
        """Strongly consistent BatchGetItem, 100 keys a call, retrying unprocessed keys."""
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, dict] = {}
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            request = {self.table: {
                "Keys": [{"job_id": _s(i)} for i in ids[start:start + BATCH_GET_LIMIT]],
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
    def _group_key(self, group_id: str) -> dict:
        return {"job_id": _s(GROUP_PREFIX + group_id)}

    def _save_group(self, group_id: str, result: GroupResult) -> GroupResult:
        update = _Update()
        update.set("kind", _s("group"))
        update.set("result", _s(json_dumps(result.as_tuple())))
        update.set("created_at", _s(utc_now()), if_absent=True)
        expires_at = self._expires_at()
        if expires_at:
            update.set("expires_at", expires_at)
        self.client.update_item(
            TableName=self.table, Key=self._group_key(group_id),
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names, ExpressionAttributeValues=update.values,
        )
        return result

    def _restore_group(self, group_id: str) -> dict | None:
        item = self.client.get_item(
            TableName=self.table, Key=self._group_key(group_id), ConsistentRead=True
        ).get("Item")
        if not item or "result" not in item:
            return None
        return {
            "group_id": group_id,
            "result": result_from_tuple(json.loads(item["result"]["S"]), self.app),
            "date_done": _str(item, "created_at"),
        }

    def _delete_group(self, group_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self._group_key(group_id))

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
        # A string set, not a counter: a redelivered header task adds its id
        # again and changes nothing, so duplicates cannot fire the body early.
        done = self.client.update_item(
            TableName=self.table, Key=self._group_key(group_id),
            UpdateExpression="ADD #done :id",
            ExpressionAttributeNames={"#done": "done_ids"},
            ExpressionAttributeValues={":id": {"SS": [request.id]}},
            ReturnValues="UPDATED_NEW",
        )["Attributes"]["done_ids"]["SS"]
        size = request.chord.get("chord_size") or len(deps)
        if len(done) < size or not self._claim_chord(group_id):
            return
        join = deps.join_native if deps.supports_native_join else deps.join
        try:
            with allow_join_result():
                values = join(timeout=self.app.conf.result_chord_join_timeout, propagate=True)
        except Exception as exc:
            self.chord_error_from_stack(callback, ChordError(f"a chord member failed: {exc!r}"))
            return
        try:
            callback.delay(values)
        except Exception as exc:
            self.chord_error_from_stack(callback, ChordError(f"chord callback failed: {exc!r}"))

    def _claim_chord(self, group_id: str) -> bool:
        """Exactly one caller fires a chord's body, even when the last part runs twice."""
        try:
            self.client.update_item(
                TableName=self.table, Key=self._group_key(group_id),
                UpdateExpression="SET #fired = :now",
                ConditionExpression="attribute_not_exists(#fired)",
                ExpressionAttributeNames={"#fired": "chord_fired_at"},
                ExpressionAttributeValues={":now": _s(utc_now())},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
