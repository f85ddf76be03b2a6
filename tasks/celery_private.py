"""Every private name of Celery, kombu and billiard the project relies on, in one place.

Nothing else in tasks/ reads a private attribute of these libraries or imports a module
they do not document (tests/test_celery_private.py scans the code for it). What we
override or call is listed in `OVERRIDDEN` with the parameters we rely on, and each
helper below has a contract test in tests/test_celery_private.py against the installed
versions, so an upgrade that changes one fails that test loudly instead of the worker
quietly. pyproject.toml bounds celery, kombu and billiard to the minor versions it passes on.

Why here, beside the jobs and not in tasks/worker: the submitting side needs one too
(tasks.submit.claim_check overrides `AMQP.as_task_v2`), and a process that only submits
must not load the worker (tests/test_settings.py). So the worker's internals (Celery's
Consumer, Request and worker state, kombu's SQS transport) load on first use of their
name, in the worker only.
"""

from __future__ import annotations

import importlib
import inspect
import time
from typing import TYPE_CHECKING, Any

from billiard.exceptions import Terminated, TimeLimitExceeded, WorkerLostError
from celery.app.amqp import AMQP
from celery.app.task import Context
from celery.platforms import signals as _platform_signals
from celery.utils.saferepr import saferepr
from celery.utils.time import maybe_iso8601

__all__ = [
    "AMQP",
    "OVERRIDDEN",
    "TASKS_STEP",
    "Consumer",
    "Context",
    "Request",
    "SQSChannel",
    "SQSTransport",
    "Terminated",
    "TimeLimitExceeded",
    "VirtualChannel",
    "WorkerLostError",
    "maybe_iso8601",
    "saferepr",
    "signum",
]

if TYPE_CHECKING:
    from celery.worker.consumer import Consumer
    from celery.worker.request import Request
    from kombu.transport.SQS import Channel as SQSChannel
    from kombu.transport.SQS import Transport as SQSTransport
    from kombu.transport.virtual import Channel as VirtualChannel

    OVERRIDDEN: tuple[tuple[type, str, tuple[str, ...]], ...]

# Worker-side names, imported when first asked for (module __getattr__ below).
_LAZY = {
    "Consumer": ("celery.worker.consumer", "Consumer"),
    "Request": ("celery.worker.request", "Request"),
    "SQSChannel": ("kombu.transport.SQS", "Channel"),
    "SQSTransport": ("kombu.transport.SQS", "Transport"),
    "VirtualChannel": ("kombu.transport.virtual", "Channel"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    if name == "OVERRIDDEN":
        return _overridden()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _overridden() -> tuple[tuple[type, str, tuple[str, ...]], ...]:
    """Methods we override or call that are not documented API: (class, name, parameters)."""
    consumer, request = __getattr__("Consumer"), __getattr__("Request")
    sqs, virtual = __getattr__("SQSChannel"), __getattr__("VirtualChannel")
    return (
        # The claim check (tasks.submit.claim_check): the message before it is serialised.
        (AMQP, "as_task_v2", ("self", "task_id", "name", "args", "kwargs")),
        (consumer, "create_task_handler", ("self", "promise")),
        # What `celery control cancel_consumer` / `add_consumer` run (scale-in protection).
        (consumer, "cancel_task_queue", ("self", "queue")),
        (consumer, "add_task_queue", ("self", "queue")),
        (consumer, "call_soon", ("self", "p")),
        (request, "__init__", ("self", "message")),
        (request, "on_accepted", ("self", "pid", "time_accepted")),
        (request, "on_failure", ("self", "exc_info", "send_failed_event", "return_ok")),
        (request, "acknowledge", ("self",)),
        (request, "reject", ("self", "requeue")),
        # Celery's revoke(terminate=True) path: kill the job's pool process (revocation).
        (request, "terminate", ("self", "pool", "signal")),
        (sqs, "_put", ("self", "queue", "message")),
        (sqs, "_get_async", ("self", "queue", "count", "callback")),
        (
            sqs,
            "_get_from_sqs",
            ("self", "queue_name", "queue_url", "connection", "count", "callback"),
        ),
        (sqs, "_on_messages_ready", ("self", "queue", "qname", "messages")),
        (sqs, "_message_to_python", ("self", "message", "queue_name", "q_url")),
        (sqs, "_new_queue", ("self", "queue")),
        (sqs, "_schedule_queue", ("self", "queue")),
        (sqs, "canonical_queue_name", ("self", "queue_name")),
        (sqs, "asynsqs", ("self", "queue")),
        (
            sqs,
            "new_sqs_client",
            ("self", "region", "access_key_id", "secret_access_key", "session_token"),
        ),
        (sqs, "basic_qos", ("self", "prefetch_size", "prefetch_count", "apply_global")),
        (sqs, "basic_ack", ("self", "delivery_tag", "multiple")),
        (sqs, "basic_reject", ("self", "delivery_tag", "requeue")),
        (virtual, "basic_ack", ("self", "delivery_tag", "multiple")),
    )


def parameters(cls: type, name: str) -> tuple[str, ...]:
    return tuple(inspect.signature(getattr(cls, name)).parameters)


# The consumer step that registers the tasks: a consumer step that needs the app's tasks
# (tasks.worker.celery_hooks) requires it by this name.
TASKS_STEP = "celery.worker.consumer.tasks:Tasks"


def current_app_object() -> Any:
    """The current app itself, not celery's proxy to it (`Proxy._get_current_object`): in a
    pool process, the worker's app, which Celery's initializer made current."""
    from celery import current_app

    return current_app._get_current_object()


def signum(sig: str | int) -> int:
    """The number of a signal given as "TERM", "SIGTERM", 15 (Celery's own parsing, what
    its revoke(terminate=True) accepts)."""
    return _platform_signals.signum(sig)


# --- Celery's task context (the request a task sees) -----------------------------------
def context_method_names() -> list[str]:
    """The public methods and properties of Celery's task Context: a message header named
    like one would shadow it (the message gate refuses those)."""
    return sorted(
        name
        for name, value in vars(Context).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    )


# --- the worker's own state (celery.worker.state) ---------------------------------
def _worker_state() -> Any:
    from celery.worker import state

    return state


def held_requests() -> list:
    """Every request this worker holds (reserved, scheduled or running), copied safely.

    `requests` is keyed by task id: two deliveries of one job id (a duplicate, dropped by
    the run lease) share a key, and the first to end pops the other's. The sets hold every
    request object, so the union misses none (each once)."""
    worker_state = _worker_state()
    for _ in range(5):
        try:
            held = {id(r): r for r in worker_state.requests.values()}
            for group in (
                worker_state.reserved_requests,
                worker_state.active_requests,
                getattr(worker_state, "scheduled_requests", ()),
            ):
                held.update((id(r), r) for r in list(group))
            return list(held.values())
        except RuntimeError:  # changed size while copied from another thread
            time.sleep(0.01)
    return []


def running_requests() -> list:
    """The requests whose job a pool process has accepted and is running."""
    worker_state = _worker_state()
    for _ in range(5):
        try:
            return list(worker_state.active_requests)
        except RuntimeError:  # changed size while copied from another thread
            time.sleep(0.01)
    return []


def active_or_reserved() -> bool:
    """A job is running, or waiting for a pool process."""
    worker_state = _worker_state()
    return bool(worker_state.active_requests or worker_state.reserved_requests)


def succeeded(request: Any) -> bool:
    """Celery counted this request's task as returned (set before the ack of a success)."""
    return request.id in _worker_state().successful_requests


def mark_revoked(job_id: str) -> None:
    """Make Celery drop this job when its ETA comes (it will not run)."""
    _worker_state().revoked.add(job_id)


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


def channel_queue_name(channel: Any, queue: str) -> str:
    """The SQS queue name kombu uses for a kombu queue name."""
    return channel.canonical_queue_name(queue)


def channel_async_client(channel: Any, queue_name: str) -> Any:
    """kombu's own async HTTP client for one queue (what its long poll runs on)."""
    return channel.asynsqs(queue=queue_name)


def channel_hub(channel: Any) -> Any:
    """The event loop (kombu's Hub) a channel was made on, or None outside a worker."""
    return channel.hub


def qos_prefetch(channel: Any) -> int:
    """How many unacknowledged messages the channel may hold (0: no limit)."""
    return channel.qos.prefetch_count


def set_qos_prefetch(channel: Any, count: int) -> None:
    """Change that limit without a basic_qos round (kombu reads it on each receive)."""
    channel.qos.prefetch_count = count


def qos_free(channel: Any) -> int:
    """How many more messages the channel may take now (kombu's estimate)."""
    return channel.qos.can_consume_max_estimate() or 0


def delivery_info(channel: Any, delivery_tag: Any) -> dict:
    """The delivery info of an unacknowledged message (raises KeyError if unknown)."""
    return channel.qos.get(delivery_tag).delivery_info
