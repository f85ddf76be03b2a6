"""A job's public record (GET /jobs/{job_id}'s JSON) as the events of its life, oldest first.

The record keeps one time per fact (docs/job-record.md): submitted_at, created_at,
started_at, updated_at (the last write: a progress or retry), revoked_at, finished_at, and a
callback's last_attempt_at, delivered_at or given_up_at. Each delivery of the message is not
kept, only `attempts` and `retries`: they are shown on the events they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    at: str  # ISO-8601 UTC, as the record holds it
    what: str
    detail: str = ""
    bad: bool = False  # shown red


def _progress_text(progress: Any) -> str:
    if isinstance(progress, dict):
        parts = []
        if "current" in progress and "total" in progress:
            parts.append(f"{progress['current']} of {progress['total']}")
        if isinstance(progress.get("message"), str):
            parts.append(progress["message"])
        return ", ".join(parts)
    return ""


def timeline(job: dict[str, Any]) -> list[Event]:
    """The events of `job` (a public record), sorted by time; a record without times
    (PENDING: queued or unknown) has none."""
    status = job.get("status", "")
    events: list[Event] = []

    def add(key: str, what: str, detail: str = "", bad: bool = False) -> None:
        if isinstance(job.get(key), str):
            events.append(Event(job[key], what, detail, bad))

    add("submitted_at", "submitted")
    add("created_at", "recorded", "the record's first write")
    attempts = job.get("attempts")
    add("started_at", "started", f"attempt {attempts}" if attempts else "")
    if status in ("PROGRESS", "RETRY", "STARTED") and job.get("updated_at") != job.get(
        "started_at"
    ):
        detail = _progress_text(job.get("progress"))
        if status == "RETRY":
            detail = f"retry {job.get('retries', '?')}" + (f": {detail}" if detail else "")
        add("updated_at", status.lower(), detail)
    if status == "SCHEDULED":  # deferred until its eta (docs/job-record.md, `schedule`)
        eta = job.get("eta")
        add("updated_at", "scheduled", f"for {eta}" if isinstance(eta, str) else "")
    if status == "REVOKED":
        add("revoked_at", "revoked", "cancelled", bad=True)
    elif job.get("finished_at"):
        error = job.get("error") or {}
        detail = error.get("type", "") + (f": {error['message']}" if error.get("message") else "")
        retries = f" after {job['retries']} retries" if job.get("retries") else ""
        add("finished_at", f"finished {status}{retries}", detail, bad=status == "FAILURE")
    callback = job.get("callback")
    if isinstance(callback, dict):
        tries = f"{callback.get('attempts', 0)} attempt(s)"
        if isinstance(callback.get("delivered_at"), str):
            events.append(Event(callback["delivered_at"], "callback delivered", tries))
        elif isinstance(callback.get("given_up_at"), str):
            last = callback.get("last_error") or callback.get("last_status") or ""
            events.append(
                Event(callback["given_up_at"], "callback given up", f"{tries} {last}", True)
            )
        elif isinstance(callback.get("last_attempt_at"), str):
            events.append(
                Event(callback["last_attempt_at"], f"callback {callback.get('state', '')}", tries)
            )
    return sorted(events, key=lambda e: e.at)
