"""What a job's item holds, and the attributes one status write sets on it.

Item layout (docs: the job record): `job_id` (partition key), `status`, `task`, `result`
(JSON text) or `result_ref` (a result kept in S3), `error` {type, message, module, args},
`traceback`, `progress` (JSON text), `attempts`, `retries`, `worker`, `queue`,
`args`/`kwargs` (reprs), `created_at`, `submitted_at`, `started_at`, `finished_at`,
`updated_at` (ISO-8601 UTC), `expires_at` (epoch seconds, the TTL attribute),
`parent_id`, `root_id`, `group_id`, `list_pk` (the listing index), `rejected` (the gate's
mark), `callback`; while a run holds the job, `run_lease` and `run_token`
(tasks.results.leases).

Error messages and tracebacks are cut (MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS) so that an
item stays under DynamoDB's 400 KB.
"""

from __future__ import annotations

from typing import Any

from celery import states

from tasks.results.encoding import Update, epoch_ms_iso, n, s, utc_now
from tasks.results.transitions import TERMINAL_STATES

# DynamoDB items hold 400 KB; keep room for the other attributes.
MAX_RESULT_BYTES = 350_000
MAX_TRACEBACK_CHARS = 16_000
MAX_ERROR_CHARS = 4_000
MAX_PROGRESS_BYTES = 16_000
MAX_REPR_CHARS = 2_000


def error_map(error: dict[str, Any]) -> dict:
    """`{type, message, module}` as a DynamoDB map, the message truncated."""
    mapped = {
        "type": s(str(error.get("type") or "Exception")[:200]),
        "message": s(str(error.get("message") or "")[:MAX_ERROR_CHARS]),
    }
    if error.get("module"):
        mapped["module"] = s(str(error["module"])[:200])
    if error.get("args") is not None:
        mapped["args"] = s(str(error["args"])[:MAX_ERROR_CHARS])
    return {"M": mapped}


def job_update(
    state: str,
    result_text: str | None,
    error: dict | None,
    traceback: str | None,
    progress_text: str | None,
    facts: dict[str, Any] | None,
    *,
    expires_at: dict | None,
    result_ref: dict | None = None,
) -> Update:
    """The SET/REMOVE of a write that moves the job to `state` (its condition apart)."""
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
    if expires_at:
        update.set("expires_at", expires_at)
    if facts:
        add_facts(update, facts, state)
    if state == states.STARTED:
        update.remove("rejected")  # a worker ran it: the gate may not write it again
    return update


def add_facts(update: Update, facts: dict[str, Any], state: str) -> None:
    """What the request knows (task, attempts, worker, argsrepr...), cut to size."""
    if isinstance(facts.get("task"), str):
        update.set("task", s(facts["task"][:500]))
    for attr in ("attempts", "retries"):
        if isinstance(facts.get(attr), int) and not isinstance(facts[attr], bool):
            update.set(attr, n(facts[attr]))
    if isinstance(facts.get("worker"), str):
        update.set("worker", s(facts["worker"][:500]))
    submitted = facts.get("submitted_at")  # epoch ms from the message header
    if (
        isinstance(submitted, int)
        and not isinstance(submitted, bool)
        and 0 <= submitted < 32_503_680_000_000
    ):  # before the year 3000
        update.set("submitted_at", s(epoch_ms_iso(submitted)), if_absent=True)
    if state in (states.STARTED, *TERMINAL_STATES):
        for attr in ("args", "kwargs", "queue", "parent_id", "root_id", "group_id"):
            value = facts.get(attr)
            if isinstance(value, str) and value:
                update.set(attr, s(value[:MAX_REPR_CHARS]))
