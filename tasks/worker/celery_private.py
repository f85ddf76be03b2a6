"""Every private name of Celery, kombu and billiard the worker relies on, in one place.

Nothing else in the project reads a private attribute of these libraries or
imports a module they do not document. What we override is listed in
`OVERRIDDEN` with the parameters we rely on; tests/test_celery_private.py
checks each name and signature against the installed versions, so an upgrade
that changes one fails that test loudly instead of the worker quietly.
pyproject.toml bounds celery, kombu and billiard to the minor versions it
passes on.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from celery.worker.request import Request
from kombu.transport import SQS
from kombu.transport.virtual import Channel as VirtualChannel

__all__ = ["OVERRIDDEN", "Consumer", "Request", "SQSChannel", "SQSTransport", "VirtualChannel"]

SQSChannel = SQS.Channel
SQSTransport = SQS.Transport

# Methods we override or call that are not documented API: (class, name, parameters).
OVERRIDDEN: tuple[tuple[type, str, tuple[str, ...]], ...] = (
    (Consumer, "create_task_handler", ("self", "promise")),
    # What `celery control cancel_consumer` / `add_consumer` run (tasks.worker.protection).
    (Consumer, "cancel_task_queue", ("self", "queue")),
    (Consumer, "add_task_queue", ("self", "queue")),
    (Consumer, "call_soon", ("self", "p")),
    (Request, "__init__", ("self", "message")),
    (Request, "on_accepted", ("self", "pid", "time_accepted")),
    (Request, "on_failure", ("self", "exc_info", "send_failed_event", "return_ok")),
    (Request, "acknowledge", ("self",)),
    (Request, "reject", ("self", "requeue")),
    # Celery's revoke(terminate=True) path: kill the job's pool process (tasks.worker.revocation).
    (Request, "terminate", ("self", "pool", "signal")),
    (SQSChannel, "_put", ("self", "queue", "message")),
    (SQSChannel, "_get_async", ("self", "queue", "count", "callback")),
    (SQSChannel, "_get_from_sqs", ("self", "queue_name", "queue_url", "connection", "count",
                                   "callback")),
    (SQSChannel, "_on_messages_ready", ("self", "queue", "qname", "messages")),
    (SQSChannel, "_message_to_python", ("self", "message", "queue_name", "q_url")),
    (SQSChannel, "_new_queue", ("self", "queue")),
    (SQSChannel, "_schedule_queue", ("self", "queue")),
    (SQSChannel, "new_sqs_client", ("self", "region", "access_key_id", "secret_access_key",
                                    "session_token")),
    (SQSChannel, "basic_ack", ("self", "delivery_tag", "multiple")),
    (SQSChannel, "basic_reject", ("self", "delivery_tag", "requeue")),
    (VirtualChannel, "basic_ack", ("self", "delivery_tag", "multiple")),
)


def parameters(cls: type, name: str) -> tuple[str, ...]:
    return tuple(inspect.signature(getattr(cls, name)).parameters)


# --- the worker's own state (celery.worker.state) ---------------------------------
def held_requests() -> list:
    """Every request this worker holds (reserved, scheduled or running), copied safely.

    `requests` is keyed by task id: two deliveries of one job id (a duplicate, dropped by
    the run lease) share a key, and the first to end pops the other's. The sets hold every
    request object, so the union misses none (each once)."""
    for _ in range(5):
        try:
            held = {id(r): r for r in worker_state.requests.values()}
            for group in (worker_state.reserved_requests, worker_state.active_requests,
                          getattr(worker_state, "scheduled_requests", ())):
                held.update((id(r), r) for r in list(group))
            return list(held.values())
        except RuntimeError:  # changed size while copied from another thread
            time.sleep(0.01)
    return []


def running_requests() -> list:
    """The requests whose job a pool process has accepted and is running."""
    for _ in range(5):
        try:
            return list(worker_state.active_requests)
        except RuntimeError:  # changed size while copied from another thread
            time.sleep(0.01)
    return []


def active_or_reserved() -> bool:
    """A job is running, or waiting for a pool process."""
    return bool(worker_state.active_requests or worker_state.reserved_requests)


def succeeded(request: Any) -> bool:
    """Celery counted this request's task as returned (set before the ack of a success)."""
    return request.id in worker_state.successful_requests


def mark_revoked(job_id: str) -> None:
    """Make Celery drop this job when its ETA comes (it will not run)."""
    worker_state.revoked.add(job_id)


# --- the consumer: stop and resume taking messages --------------------------------
def stop_consuming(consumer: Any) -> list[str]:
    """Stop taking messages from every task queue (on the event loop); returns their names.

    Jobs already received run on. kombu's SQS channel releases what a long poll still
    in flight brings back (visible again at once)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    names = [queue.name for queue in (task_consumer.queues if task_consumer else [])]
    for name in names:
        consumer.cancel_task_queue(name)
    return names


def resume_consuming(consumer: Any, names: list[str]) -> None:
    """Take messages from these task queues again (on the event loop)."""
    for name in names:
        consumer.add_task_queue(name)


# --- a request's private parts ------------------------------------------------------
def request_message(request: Any) -> Any:
    """The kombu message a request was made from."""
    return getattr(request, "_message", None) or getattr(request, "message", None)


def request_dict(request: Any) -> dict:
    """The dict that becomes `task.request` in the pool process."""
    return request._request_dict


def request_context(request: Any) -> Any:
    """The request as the task will see it (what the backend reads facts from)."""
    return request._context


def terminate_request(request: Any, consumer: Any, signal: str) -> None:
    """Celery's revoke(terminate=True) for one request (on the event loop): its pool process
    gets `signal`, the job is recorded REVOKED and its message acknowledged."""
    request.terminate(consumer.pool, signal=signal)


def delivery_count(request: Any) -> int | None:
    value = getattr(request, "_request_dict", {}).get("delivery_count")
    return value if isinstance(value, int) else None


# --- the pool and the event loop ----------------------------------------------------
def pool_processes(consumer: Any) -> list:
    """The prefork pool's child processes (to kill them on a shutdown cut-off)."""
    pool = getattr(getattr(consumer, "pool", None), "_pool", None)
    return list(getattr(pool, "_pool", None) or [])


def pool_size(consumer: Any) -> int | None:
    """How many jobs the worker's pool runs at once now (its processes; autoscale changes it)."""
    try:
        return int(consumer.pool.num_processes)
    except (AttributeError, TypeError, ValueError):  # no pool (yet), or not started
        return None


def loop_thread(hub: Any) -> int | None:
    """The thread id kombu's hub runs its loop on."""
    return getattr(hub, "_loop_thread", None)


# --- kombu's SQS channel internals ----------------------------------------------------
def channel_queue_url(channel: Any, queue: str) -> str:
    return channel._new_queue(queue)


def channel_is_consuming(channel: Any, queue: str) -> bool:
    return queue in channel._active_queues
