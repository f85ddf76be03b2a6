"""Raw SQS message bodies: captured from real `apply_async()` calls, or hand-made and broken."""

from __future__ import annotations

import base64
import json
from typing import Any


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def capture(stack, signature) -> tuple[str, str]:
    """Publish `signature` and take its raw SQS body back off the queue (no worker running)."""
    result = signature.apply_async()
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
