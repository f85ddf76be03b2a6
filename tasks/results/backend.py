"""Celery's result backend on the job records: the adapter between Celery and JobRecords.

Celery loads it through `result_backend = "tasks.results.backend:DynamoDBJobBackend"`. Each
of Celery's writes becomes one transition of the job's record (tasks.results.records; the
item layout: tasks.results.job_item), each read a strongly consistent GetItem or
BatchGetItem decoded as Celery's meta (tasks.results.meta). A result over what an item
holds goes to S3 (tasks.results.large_objects); chords complete in tasks.results.chords.
"""

from __future__ import annotations

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
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import GroupResult, result_from_tuple
from kombu.utils.json import dumps as json_dumps
from kombu.utils.uuid import uuid

from tasks.jobkit.errors import ResultNotSerializable, ResultTooLarge
from tasks.ops.clients import dynamodb_client, s3_client
from tasks.ops.settings import Settings
from tasks.results import large_objects
from tasks.results.chords import ChordBackend
from tasks.results.encoding import item_str
from tasks.results.index_key import IndexKeys
from tasks.results.job_item import MAX_RESULT_BYTES
from tasks.results.meta import (
    is_start_meta,
    item_meta,
    meta_text,
    pending_meta,
    request_facts,
)
from tasks.results.public_errors import error_record
from tasks.results.records import JobRecords
from tasks.results.revoked_mark import note_revoked, revoked_noted
from tasks.results.run_lease import note_duplicate

log = logging.getLogger(__name__)

RETRYABLE_ERROR_CODES = (
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
)


class DynamoDBJobBackend(ChordBackend, BaseBackend):
    """Celery loads this through `result_backend = "tasks.results.backend:DynamoDBJobBackend"`."""

    supports_native_join = True
    supports_autoexpire = True
    persistent = True

    def __init__(self, app, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self.settings = Settings.of(app)
        self.table = self.settings.table_name
        expires = self.app.conf.result_expires
        if isinstance(expires, timedelta):
            expires = expires.total_seconds()
        self.expires_seconds = int(expires) if expires else None
        self._client = None
        self._client_pid: int | None = None
        # A run's lease lasts one visibility timeout: its message is back after that too.
        self.records = JobRecords(
            lambda: self.client,
            self.table,
            self.expires_seconds,
            run_lease_seconds=self.settings.visibility_timeout,
            index_keys=IndexKeys.of(self.settings),
        )

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
    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs) -> Any:
        facts = request_facts(request) if request is not None else None
        if state == states.SUCCESS:
            try:
                # allow_nan=False: Infinity/NaN are not JSON, and clients must parse this.
                text = json_dumps(result, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return self._fail(
                    task_id, ResultNotSerializable(f"result is not JSON: {exc}"), facts
                )
            if len(text.encode()) > MAX_RESULT_BYTES:
                return self._store_large_result(task_id, text, facts, result)
            self.records.transition(task_id, state, result_text=text, facts=facts)
        elif state in (states.FAILURE, states.RETRY, states.REVOKED):
            if state == states.REVOKED and request is not None and revoked_noted(request):
                return result  # the revoke wrote REVOKED: a second write would be refused
            # No exception (self.retry() without exc, update_state with no meta): no
            # error, read back as None, as Celery's backends do (exception_to_python).
            error = self.error_of(result, request) if result else None
            self.records.transition(task_id, state, error=error, traceback=traceback, facts=facts)
        elif state in (states.STARTED, states.PENDING, states.RECEIVED):
            # A STARTED write refused by a REVOKED record: the job must not run
            # (tasks.jobkit.task.JobTask.before_start reads the mark).
            refusal: dict = {}
            # Celery's own start meta is the record's `worker`; any other meta (a caller's
            # update_state) is kept as written, as the progress of a custom state is.
            text = None if is_start_meta(result, request) else meta_text(result)
            if not self.records.transition(
                task_id, state, progress_text=text, facts=facts, refusal=refusal
            ):
                self.note_refusal(request, refusal, starting=state == states.STARTED)
        else:  # a custom state such as PROGRESS: its meta is the job's progress
            text = meta_text(result)
            refusal = {}
            if not self.records.transition(
                task_id, state, progress_text=text, facts=facts, refusal=refusal
            ):
                self.note_refusal(request, refusal)  # a running job was revoked
        return result

    def _store_large_result(self, task_id: str, text: str, facts: dict | None, result: Any) -> Any:
        """A result over what a record holds: its JSON in S3 under this run's own key, the
        record its reference with the checksum. Only the winner of the conditional SUCCESS
        write publishes it where HTTP reads it; a refused finisher removes its copy."""
        bucket = self.settings.bucket_name
        try:
            ref = large_objects.store_result(self.s3, bucket, task_id, uuid(), text)
        except (ClientError, BotoCoreError) as exc:
            log.error("job %s: S3 refused its %d-byte result: %s", task_id, len(text), exc)
            return self._fail(
                task_id,
                ResultTooLarge(
                    f"result is {len(text.encode())} bytes of JSON, over the {MAX_RESULT_BYTES} a "
                    "job record holds (DynamoDB's item limit is 400 KB), and the results bucket "
                    f"{bucket} refused it: {exc}"
                ),
                facts,
            )
        if self.records.transition(
            task_id, states.SUCCESS, facts=facts, result_ref=large_objects.result_ref_map(ref)
        ):
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
        self.records.transition(
            task_id, states.FAILURE, error=self.error_of(exc, ours=True), facts=facts
        )
        return exc

    def error_of(self, result: Any, request: Any = None, *, ours: bool = False) -> dict[str, Any]:
        """`{type, message, module, args}` of an exception or Celery's exception dict:
        `message` only when public (what HTTP shows), `args` always (what AsyncResult
        rebuilds the exception from): tasks.results.public_errors."""
        if isinstance(result, BaseException):
            result = self.prepare_exception(result, serializer="json")
        return error_record(result, request, ours=ours)

    def record_quietly(
        self,
        task_id: str,
        exc: BaseException,
        state: str = states.FAILURE,
        request: Any = None,
        *,
        holder_only: bool = False,
    ) -> bool:
        """Record `exc` as the job's outcome; log instead of raising, for callers that must
        carry on (shutdown, signal handlers). True if the write was made. `holder_only`:
        not while another run holds the job's lease (a delivery that did not run it)."""
        try:
            return self.records.transition(
                task_id,
                state,
                error=self.error_of(exc, ours=True),
                facts=request_facts(request) if request is not None else None,
                holder_only=holder_only,
            )
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
            return pending_meta(task_id)
        return self.meta_from_decoded(item_meta(task_id, item, self.load_large_result))

    def load_large_result(self, item: dict) -> Any:
        return large_objects.load_result(self.s3, large_objects.ref_from_item(item))

    def mget_items(self, task_ids: Iterable[str]) -> dict[str, dict]:
        """Strongly consistent BatchGetItem, 100 keys a call, retrying unprocessed keys."""
        return self.records.read_many(task_ids)

    def get_many(
        self,
        task_ids,
        timeout=None,
        interval=0.5,
        no_ack=True,
        on_message=None,
        on_interval=None,
        max_iterations=None,
        READY_STATES=states.READY_STATES,
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

    # --- groups (chords: tasks.results.chords) --------------------------------------
    def _save_group(self, group_id: str, result: GroupResult) -> GroupResult:
        self.records.save_group(group_id, json_dumps(result.as_tuple()))
        return result

    def _restore_group(self, group_id: str) -> dict | None:
        saved = self.records.read_group(group_id)
        if saved is None:
            return None
        text, created_at = saved
        return {
            "group_id": group_id,
            "result": result_from_tuple(json.loads(text), self.app),
            "date_done": created_at,
        }

    def _delete_group(self, group_id: str) -> None:
        self.records.delete_group(group_id)

    def read_metas(self, task_ids: list[str]) -> dict[str, dict]:
        items = self.mget_items(task_ids)
        return {task_id: self.meta_from_item(task_id, items.get(task_id)) for task_id in task_ids}
