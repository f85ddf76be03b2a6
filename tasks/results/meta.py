"""A job record as Celery's task meta, and a Celery request as the record's facts.

Out: `item_meta` reads a job item as Celery's backends decode their meta (the backend then
rebuilds a failure's exception with BaseBackend.exception_to_python from `exc_type`,
`exc_message` and `exc_module`); `arguments_from_repr` gives AsyncResult.args/kwargs back
from the record's reprs. In: `request_facts` is what a record keeps of a request,
`meta_text` a state's meta as the record's `progress`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from celery import states
from kombu.utils.json import dumps as json_dumps
from kombu.utils.json import loads as json_loads

from tasks.results.encoding import item_num, item_str

# Celery cuts argsrepr/kwargsrepr at 1,024 characters (and 3 levels deep, as `...`): a
# repr that long may have been cut, so it is not taken for the arguments.
TRUSTED_REPR_CHARS = 1000


def pending_meta(task_id: str) -> dict:
    return {
        "task_id": task_id,
        "status": states.PENDING,
        "result": None,
        "traceback": None,
        "children": [],
    }


def item_meta(task_id: str, item: dict, load_large: Callable[[dict], Any]) -> dict:
    """Celery's task meta of a job item that has a status, before exception_to_python.
    `load_large` reads a result kept in S3 (the item's `result_ref`)."""
    status = item_str(item, "status")
    result: Any = None
    # kombu's JSON, written and read as Celery's backends do: dates, times, decimals,
    # UUIDs and bytes come back as themselves.
    if status == states.SUCCESS and "result" in item:
        result = json_loads(item_str(item, "result"))
    elif status == states.SUCCESS and "result_ref" in item:  # kept in S3: one GetObject
        result = load_large(item)
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
    return meta


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
    return (
        isinstance(meta, dict)
        and set(meta) == {"pid", "hostname"}
        and isinstance(hostname, str)
        and meta["hostname"] == hostname
    )


def meta_text(meta: Any) -> str:
    """A state's meta as the record's `progress` (JSON text); what is not JSON, its repr."""
    try:
        return json_dumps(meta)
    except (TypeError, ValueError):
        return json_dumps({"message": repr(meta)})


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
    for attr, source in (
        ("worker", "hostname"),
        ("args", "argsrepr"),
        ("kwargs", "kwargsrepr"),
        ("parent_id", "parent_id"),
        ("root_id", "root_id"),
        ("group_id", "group"),
        ("run_token", "run_token"),
        ("retry_of", "retry_of"),
    ):
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
