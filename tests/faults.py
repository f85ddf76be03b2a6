"""Helpers for the fault suite: queues of our own, messages aimed at them, job bookkeeping."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from celery import states

from tests.envelopes import capture

TERMINAL = (states.SUCCESS, states.FAILURE, states.REVOKED)


@dataclass
class SideQueue:
    """A queue (with DLQ) provisioned for one test, and the worker env that serves it."""

    name: str
    url: str
    dlq_url: str
    env: dict[str, str]


def side_queue(stack, label: str, visibility: int = 30, max_receive: int = 3) -> SideQueue:
    from tasks.ops.provision import ensure_queues

    name = f"{label}-{uuid.uuid4().hex[:8]}"
    pair = ensure_queues(
        stack.sqs, name, f"{name}-dlq", visibility_timeout=visibility, max_receive_count=max_receive
    )
    env = {
        "JOBS_QUEUE_NAME": name,
        "JOBS_QUEUE_URL": pair.queue_url,
        "JOBS_DLQ_NAME": f"{name}-dlq",
        "JOBS_VISIBILITY_TIMEOUT": str(visibility),
        "JOBS_MAX_RECEIVE_COUNT": str(max_receive),
    }
    return SideQueue(name, pair.queue_url, pair.dlq_url, env)


def retarget(body: str, queue_name: str) -> str:
    """A captured SQS body, routed to `queue_name` (kombu reads the queue from the envelope)."""
    envelope = json.loads(base64.b64decode(body))
    envelope["properties"]["delivery_info"]["routing_key"] = queue_name
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def submit(stack, signature, queue: SideQueue | None = None) -> str:
    """Publish `signature` (to the stack's queue, or retargeted to `queue`); returns the job id."""
    if queue is None:
        return signature.apply_async().id
    job_id, body = capture(stack, signature)
    stack.sqs.send_message(QueueUrl=queue.url, MessageBody=retarget(body, queue.name))
    return job_id


def statuses(stack, job_ids) -> dict[str, str | None]:
    from tasks.celery_app import app

    items = app.backend.mget_items(job_ids)
    return {j: items.get(j, {}).get("status", {}).get("S") for j in job_ids}


def all_terminal(stack, job_ids) -> bool:
    return all(s in TERMINAL for s in statuses(stack, job_ids).values())


def received_count(log: str, job_id: str) -> int:
    return len(re.findall(rf"\[{re.escape(job_id)}\] received", log))


def drained(stack, url: str | None = None) -> bool:
    """No message visible, in flight or delayed (a countdown within 900 s waits in SQS)."""
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=url or stack.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return stack.queue_counts(url) == (0, 0) and attrs["ApproximateNumberOfMessagesDelayed"] == "0"


def pool_processes(pid: int) -> list[int]:
    """The child processes of `pid`, whichever of its threads forked them."""
    children: list[int] = []
    for thread in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(p) for p in (thread / "children").read_text().split()]
        except OSError:  # the thread (or the process) has just ended
            continue
    return children


def emulator_pid(port: int) -> int:
    """The pid of the moto server conftest started on `port` (found by its command line)."""
    servers = ("moto.server", "tests.atomic_moto_server")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[1:3] in (["-m", name] for name in servers) and argv[3:7] == [
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ]:
            return int(entry.name)
    raise LookupError(f"no moto server on port {port}")


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) while the block runs: it hangs, its sockets stay open."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
