"""Listing jobs by status, newest first: the `by_status` index, from Python.

    from tasks.client import list_jobs

    page = list_jobs("FAILURE", since="2026-12-01T00:00:00Z", limit=20)
    for job in page.jobs: ...                       # newest first, over all shards
    more = list_jobs("FAILURE", since=..., cursor=page.next) if page.next else None

The index (tasks.ops.provision.list_index) has one partition per status and shard
(`list_pk` = "<status>#<shard>", written by the status writes of tasks.results.records under
the rule of tasks.results.index_key), sorted by `created_at`. By default (JOBS_LIST_SHARDS=1)
a status is one partition, so every page, over HTTP too, is globally ordered. With more
shards a page here queries every shard of the wanted status (all listed statuses for
status=None), each from where the cursor left it, and merges them newest first (k-way);
GET /jobs (API Gateway makes one Query per request) walks the shards one after the other
instead: see docs/http-api.md.

The cursor is opaque: base64url of a small JSON document naming the status and, per
partition, where the next page starts. It is validated strictly; a forged one is a
ValueError, never a query of another key range.
"""

from __future__ import annotations

import base64
import heapq
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from celery import states

from tasks.ops.provision import LIST_INDEX, LIST_PROJECTED
from tasks.results.encoding import item_str, s
from tasks.results.index_key import IndexKeys

# Celery's states as the records hold them (PENDING is never recorded: no record is PENDING).
# A status added here is listed by GET /jobs too once the templates' pattern names it.
LISTED_STATES: tuple[str, ...] = (
    states.STARTED,
    "PROGRESS",
    states.RETRY,
    states.SUCCESS,
    states.FAILURE,
    states.REVOKED,
    "SCHEDULED",  # waiting for its eta (tasks.results.transitions.SCHEDULED): listed at once
)
MAX_LIMIT = 100
ISO_TIME = re.compile(r"^\d{4}-[01]\d-[0-3]\d(T[0-2]\d:[0-5]\d:[0-5]\d(\.\d{1,6})?Z)?$")
_CREATED = re.compile(r"^\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d\.\d{3}Z$")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}$"
)
_TASK = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
_FIELDS = ("job_id", "status", "task", "created_at", *LIST_PROJECTED)
_DONE = 0  # a partition read to its end (in a cursor)
# Queries per partition and page: a `task` filter that matches rarely makes Query pages
# short; past this the page is short too and its cursor goes on from there.
MAX_QUERIES = 8


@dataclass(frozen=True)
class JobPage:
    jobs: list[dict[str, str]]  # job_id, status, task, created_at, updated_at[, *_at]
    next: str | None  # the cursor of the next page; None after the last


# A partition's position: None (its start), _DONE, or (created_at, job_id) of the last
# item listed from it (the next page starts after it).
Position = tuple[str, str] | int | None


def since_key(since: str) -> str:
    """`since` as the lower bound of created_at: ISO-8601 UTC, a date or a time with Z.

    The trailing Z is dropped: the records' times have milliseconds, and
    "…T00:00:00" sorts before "…T00:00:00.000Z" where "…T00:00:00Z" would sort after it."""
    if not isinstance(since, str) or not ISO_TIME.match(since):
        raise ValueError(
            f"since={since!r}: expected ISO-8601 UTC such as 2026-12-01T00:00:00Z or 2026-12-01"
        )
    return since.removesuffix("Z")


def partitions(status: str | None, keys: IndexKeys | None = None) -> list[str]:
    if status is not None and status not in LISTED_STATES:
        raise ValueError(f"status={status!r}: expected one of {', '.join(LISTED_STATES)}")
    wanted = LISTED_STATES if status is None else (status,)
    keys = keys or IndexKeys()
    return [pk for name in wanted for pk in keys.partitions(name)]


def encode_cursor(status: str | None, positions: list[Position]) -> str:
    data = {
        "v": 1,
        "s": status or "*",
        "p": [list(p) if isinstance(p, tuple) else p for p in positions],
    }
    text = json.dumps(data, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, status: str | None, count: int) -> list[Position]:
    """The positions of a cursor this function's encode_cursor wrote for this status."""
    try:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,4000}", cursor):
            raise ValueError("not base64url")
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or set(data) != {"v", "s", "p"} or data["v"] != 1:
            raise ValueError("not a cursor")
        if data["s"] != (status or "*"):
            raise ValueError("a cursor of another listing")
        raw = data["p"]
        if not isinstance(raw, list) or len(raw) != count:
            raise ValueError("wrong number of partitions")
        positions: list[Position] = []
        for p in raw:
            if p is None or (p == _DONE and type(p) is int):
                positions.append(p)
            elif (
                isinstance(p, list)
                and len(p) == 2
                and all(isinstance(x, str) for x in p)
                and _CREATED.match(p[0])
                and _UUID.match(p[1])
            ):
                positions.append((p[0], p[1]))
            else:
                raise ValueError("bad position")
        return positions
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor: {exc}") from None


def job_of(item: dict) -> dict[str, str]:
    return {name: item_str(item, name) for name in _FIELDS if item_str(item, name) is not None}


def _order(job: dict[str, str]) -> tuple[str, str]:
    return job.get("created_at", ""), job["job_id"]


class _Partition:
    """One partition read newest first from a position, a Query page at a time."""

    def __init__(
        self, query: Callable[..., dict], pk: str, position: Position, base: dict[str, Any]
    ) -> None:
        self.query, self.pk, self.base = query, pk, base
        self.start: dict | None = None
        if isinstance(position, tuple):
            self.start = {"list_pk": s(pk), "created_at": s(position[0]), "job_id": s(position[1])}
        self.exhausted = position == _DONE
        self.buffer: list[dict[str, str]] = []

    def fill(self, wanted: int) -> None:
        """Query until `wanted` jobs are buffered or the partition ends (a filter may make
        a Query page short, even empty, before the end)."""
        for _ in range(MAX_QUERIES):
            if len(self.buffer) >= wanted or self.exhausted:
                return
            request = dict(self.base)
            request["ExpressionAttributeValues"] = {
                **request["ExpressionAttributeValues"],
                ":pk": s(self.pk),
            }
            request["Limit"] = wanted
            if self.start:
                request["ExclusiveStartKey"] = self.start
            answer = self.query(**request)
            self.buffer.extend(job_of(item) for item in answer.get("Items", []))
            self.start = answer.get("LastEvaluatedKey")
            self.exhausted = not self.start

    def position_after(self, taken: int, old: Position) -> Position:
        """Where the next page starts once `taken` of the buffered jobs were listed."""
        if taken == len(self.buffer):
            # All listed: go on where the last Query stopped (past filtered-out items).
            if self.exhausted:
                return _DONE
            key = self.start or {}
            return (item_str(key, "created_at") or "", item_str(key, "job_id") or "")
        if taken == 0:
            return old
        last = self.buffer[taken - 1]
        return (last["created_at"], last["job_id"])


def list_jobs(
    status: str | None,
    *,
    task: str | None = None,
    since: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    client: Any = None,
    table: str | None = None,
    settings: Any = None,
) -> JobPage:
    """Jobs of `status` (None: every recorded status), newest first, at most `limit`.

    `task` keeps only that task's jobs, `since` (ISO-8601 UTC) only jobs created since
    then; `cursor` is a JobPage.next of the same status. The client, table and the index's
    shards (JOBS_LIST_SHARDS) default to those of `settings` (an app's `app.settings`; else
    the environment's)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit={limit!r}: expected 1 to {MAX_LIMIT}")
    if settings is None:
        from tasks.ops.settings import Settings

        settings = Settings.from_env()
    pks = partitions(status, IndexKeys.of(settings))
    positions: list[Position] = (
        [None] * len(pks) if cursor is None else decode_cursor(cursor, status, len(pks))
    )
    if client is None or table is None:
        from tasks.ops.clients import dynamodb_client

        client = client or dynamodb_client(settings)
        table = table or settings.table_name
    condition = "list_pk = :pk"
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    if since is not None:
        condition += " AND created_at >= :since"
        values[":since"] = s(since_key(since))
    base: dict[str, Any] = {
        "TableName": table,
        "IndexName": LIST_INDEX,
        "KeyConditionExpression": condition,
        "ScanIndexForward": False,
    }
    if task is not None:
        if not isinstance(task, str) or not _TASK.match(task):
            raise ValueError(f"task={task!r}: expected a task name such as tasks.text.analyze")
        base["FilterExpression"] = "#task = :task"
        names["#task"] = "task"
        values[":task"] = s(task)
    base["ExpressionAttributeValues"] = values
    if names:
        base["ExpressionAttributeNames"] = names
    readers = [
        _Partition(client.query, pk, position, base)
        for pk, position in zip(pks, positions, strict=True)
    ]
    try:
        for reader in readers:
            reader.fill(limit)
    except ClientError as exc:
        # A cursor whose position is outside `since` (since changed between pages).
        if (
            exc.response.get("Error", {}).get("Code") == "ValidationException"
            and cursor is not None
        ):
            raise ValueError(f"invalid cursor for this query: {exc}") from None
        raise
    jobs, taken = _merge(readers, limit)
    new = [
        reader.position_after(count, old)
        for reader, count, old in zip(readers, taken, positions, strict=True)
    ]
    more = any(p != _DONE for p in new)
    return JobPage(jobs, encode_cursor(status, new) if more else None)


def _merge(readers: list[_Partition], limit: int) -> tuple[list[dict[str, str]], list[int]]:
    """The newest `limit` of the buffered jobs, and how many each partition gave."""
    streams: list[list[tuple[tuple[str, str], int, dict[str, str]]]] = [
        [(_order(job), index, job) for job in reader.buffer] for index, reader in enumerate(readers)
    ]
    taken = [0] * len(readers)
    jobs: list[dict[str, str]] = []
    for _, index, job in heapq.merge(*streams, key=lambda entry: entry[0], reverse=True):
        if len(jobs) == limit:
            break
        jobs.append(job)
        taken[index] += 1
    return jobs, taken
