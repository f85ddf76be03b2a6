"""The SQS body before kombu reads it: why kombu could not build a message from it, and a
stand-in message the gate then refuses with that reason (tasks.worker.channel)."""

from __future__ import annotations

import base64
from typing import Any

# The header a stand-in envelope carries (see `stand_in`): not a name a real header can
# have (HEADERS' propertyNames), so only the channel sets it.
PROBLEM_HEADER = "__envelope_problem"


def envelope_problem(payload: Any) -> str | None:
    """Why kombu could not build a message from this decoded SQS body, or None.

    Runs in the channel, before kombu's Message decodes the body: a bad envelope
    there would raise inside the event loop."""
    if not isinstance(payload, dict) or not payload:
        return "the SQS body is not a kombu JSON envelope (base64 of a JSON object)"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "envelope.properties is missing or not an object"
    if not isinstance(properties.get("delivery_info", {}), dict):
        return "envelope.properties.delivery_info is not an object"
    headers = payload.get("headers", {})
    if not isinstance(headers, dict | None):
        return "envelope.headers is not an object"
    if headers and headers.get("compression") is not None:
        # kombu would decompress the body before the gate sees it, and Celery deletes a
        # message that fails to decompress without a record. JSON is never compressed here.
        return "envelope.headers.compression is not accepted (bodies are plain JSON)"
    for key in ("content-type", "content-encoding"):
        if not isinstance(payload.get(key), str):
            return f"envelope.{key} is missing or not a string"
    body = payload.get("body")
    if not isinstance(body, str):
        return "envelope.body is missing or not a string"
    encoding = properties.get("body_encoding")
    if encoding not in (None, "base64"):
        return f"envelope.properties.body_encoding {encoding!r} is not accepted (only base64)"
    if encoding == "base64":
        try:
            base64.b64decode(body.encode("ascii"), validate=True).decode("utf-8")
        except (ValueError, UnicodeError) as exc:
            return f"envelope.body is not base64 of UTF-8 text: {str(exc)[:200]}"
    else:
        try:
            body.encode("utf-8")  # what kombu's Message does; a failure there is not recorded
        except UnicodeEncodeError:
            return "envelope.body is not UTF-8 text (it holds a lone surrogate)"
    return None


def stand_in(payload: Any, problem: str, raw_message: dict, queue_url: str) -> dict:
    """An envelope kombu can build a message from, that the gate then rejects."""
    headers = payload.get("headers") if isinstance(payload, dict) else None
    identity = {}
    if isinstance(headers, dict):
        identity = {k: headers[k] for k in ("id", "task") if isinstance(headers.get(k), str)}
    return {
        "body": "",
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {**identity, PROBLEM_HEADER: problem},
        "properties": {
            "delivery_info": {"sqs_message": raw_message, "sqs_queue": queue_url},
            "delivery_tag": raw_message.get("ReceiptHandle"),
        },
    }
