"""Raw SQS message bodies: captured from real `apply_async()` calls, or hand-made and broken."""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass
from typing import Any


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def capture(stack, signature) -> tuple[str, str]:
    """Publish `signature` and take its raw SQS body back off the queue (no worker running).
    A countdown or ETA is published with DelaySeconds=0, so that SQS holds nothing back and
    the worker is left to hold the message, as these tests want; other messages as they are."""
    timed = signature.options.get("countdown") is not None or signature.options.get("eta")
    result = signature.apply_async(**({"DelaySeconds": 0} if timed else {}))
    response = stack.sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=5
    )
    (message,) = response["Messages"]
    stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return result.id, message["Body"]


def envelope(
    headers: Any, body: Any, *, content_type: Any = "application/json", raw_body: bool = False
) -> str:
    """A kombu-style envelope around `body`, with whatever headers and content type we like."""
    inner = body if raw_body else json.dumps(body)
    env: dict[str, Any] = {
        "body": b64(inner),
        "content-encoding": "utf-8",
        "headers": headers,
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "jobs"},
            "delivery_mode": 2,
            "priority": 0,
            "delivery_tag": "00000000-0000-0000-0000-000000000000",
        },
    }
    if content_type is not None:
        env["content-type"] = content_type
    return b64(json.dumps(env))


# --- Messages exactly as kombu's SQS transport writes them, and hostile variants ----------
# (tests/test_gate_properties.py generates the variants; tests/gate_examples/ keeps some.)

JOB = "@JOB@"  # stands for a fresh job id, put in when a message is sent
QUEUE = "@QUEUE@"  # stands for the name of the queue it is sent to
INNER = "@INNER@"  # stands for the envelope's body: base64 of the expanded inner text
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def kombu_envelope(
    job_id: str = JOB,
    *,
    task: str = "tasks.debug.add",
    args: list | None = None,
    kwargs: dict | None = None,
    embed: dict | None = None,
    queue: str = "jobs",
    body: str | None = None,
) -> dict[str, Any]:
    """The JSON envelope `apply_async()` puts on SQS (keys in kombu's order).

    test_gate_properties checks it against a captured one, so it stays what kombu writes."""
    kwargs = {"x": 1, "y": 2} if kwargs is None else kwargs
    args = [] if args is None else args
    inner = json.dumps([args, kwargs, EMBED if embed is None else embed])
    return {
        "body": b64(inner) if body is None else body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": job_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": job_id,
            "parent_id": None,
            "argsrepr": repr(tuple(args)),
            "kwargsrepr": repr(kwargs),
            "origin": "gen1@host",
            "ignore_result": False,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
            "submitted_at": 1796115629123,  # tasks.submit.publish's step
        },
        "properties": {
            "correlation_id": job_id,
            "reply_to": "b7b1e43b-d675-3066-8032-9cdc5612f8bf",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "4a89af55-1883-4ac6-b626-2cfcdf83f078",
        },
    }


def expand(text: str, job_id: str, queue: str = "jobs") -> str:
    """Put the job id and queue in, and unfold "@DEEP:n@" (n nested lists) and @HUGE:n@
    (n x's).

    Deep and huge values are kept folded so that a stored example stays small, and so
    that json.dumps, which recurses, never has to write them."""
    text = text.replace(JOB, job_id).replace(QUEUE, queue)
    text = re.sub(r'"@DEEP:(\d+)@"', lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)
    return re.sub(r"@HUGE:(\d+)@", lambda m: "x" * int(m[1]), text)


@dataclass(frozen=True)
class Hostile:
    """A recipe for one SQS message: what is wrong with it, and how to write it.

    `text` is the envelope's JSON (or not-JSON) text, with JOB, INNER and the folded
    values of `expand`; `inner` the text of the body inside it (or `inner_bytes`, for
    bytes that are not UTF-8). `outer` says how the SQS body carries the text:
    "base64" (as kombu writes it), "raw" (kombu accepts plain text too), or "bytes"
    (base64 of `outer_bytes`, for an SQS body whose decoded bytes are not UTF-8).
    """

    label: str
    text: str = ""
    inner: str | None = None
    inner_bytes: bytes | None = None
    outer: str = "base64"
    outer_bytes: bytes | None = None
    attributes: dict[str, Any] | None = None

    def body(self, job_id: str, queue: str = "jobs") -> str:
        """The SQS message body, for this job id, sent to this queue."""
        if self.outer == "bytes":
            return b64(self.outer_bytes or b"")
        if self.inner_bytes is not None:
            inner = self.inner_bytes
        else:
            inner = expand(self.inner or "", job_id, queue).encode("utf-8", "surrogatepass")
        text = expand(self.text, job_id, queue).replace(INNER, b64(inner))
        return b64(text) if self.outer == "base64" else text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "text": self.text, "outer": self.outer}
        if self.inner is not None:
            out["inner"] = self.inner
        for name in ("inner_bytes", "outer_bytes"):
            if getattr(self, name) is not None:
                out[name] = b64(getattr(self, name))
        if self.attributes is not None:
            out["attributes"] = self.attributes
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hostile:
        raw = {k: base64.b64decode(data[k]) for k in ("inner_bytes", "outer_bytes") if k in data}
        return cls(
            label=data["label"],
            text=data.get("text", ""),
            inner=data.get("inner"),
            outer=data.get("outer", "base64"),
            attributes=data.get("attributes"),
            **raw,
        )


@dataclass(frozen=True)
class Received:
    """What the worker's consumer makes of an SQS body, computed here without a worker."""

    message: Any  # the kombu Message handed to the consumer
    decode_error: str | None  # kombu found an error: Celery would ack it with no record
    verdict: Any  # tasks.worker.gate.Verdict, or None if Celery is given the message
    job_id: str | None
    task: str | None


@functools.cache
def offline_channel():
    """Our worker's own kombu channel (tasks.worker.transport), used without a network:
    only its decoding of an SQS message (kombu's, behind tasks.worker.channel.EnvelopeGate)."""
    from kombu import Connection

    conn = Connection(
        "sqs://",
        transport="tasks.worker.transport:Transport",
        transport_options={
            "region": "us-east-1",
            "predefined_queues": {"jobs": {"url": "http://127.0.0.1:9/123456789012/jobs"}},
        },
    )
    return conn.default_channel


def receive_offline(sqs_body: str, receive_count: int = 1) -> Received:
    """The channel's parse, kombu's Message, then the gate: what a worker would do first."""
    from tasks import app
    from tasks.worker import gate

    channel = offline_channel()
    raw = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "Body": sqs_body,
        "Attributes": {"ApproximateReceiveCount": str(receive_count)},
    }
    payload = channel._message_to_python(raw, "jobs", "http://127.0.0.1:9/123456789012/jobs")
    message = channel.Message(payload, channel=channel)
    job_id, task = gate.job_identity(message)
    if message.errors:
        return Received(message, repr(message.errors[0][1]), None, job_id, task)
    return Received(message, None, gate.check(message, app.tasks), job_id, task)
