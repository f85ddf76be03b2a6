"""Celery protocol v2 messages as kombu's SQS transport writes them, made without Celery.

Used to pre-fill queues quickly (SendMessageBatch, 10 a call) and by the boto3 floor to
read them back; a Celery worker cannot tell these from `delay()` ones.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode(task: str, kwargs: dict[str, Any], queue: str, task_id: str | None = None) -> str:
    task_id = task_id or str(uuid.uuid4())
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([[], kwargs, embed]).encode()
    envelope = {
        "body": _b64(body),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": repr(kwargs),
            "origin": f"bench@{os.getpid()}",
            "ignore_result": False,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return _b64(json.dumps(envelope).encode())


def decode(sqs_body: str) -> tuple[str, str, dict[str, Any]]:
    """(task name, task id, kwargs) of an SQS body made by kombu or `encode`."""
    envelope = json.loads(base64.b64decode(sqs_body))
    _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    headers = envelope["headers"]
    return headers["task"], headers["id"], kwargs


def fill(
    sqs, queue_url: str, task: str, kwargs: dict[str, Any], count: int, queue: str
) -> list[str]:
    """Send `count` jobs in batches of 10; returns their ids."""
    ids: list[str] = []
    for start in range(0, count, 10):
        entries = []
        for n in range(start, min(start + 10, count)):
            task_id = str(uuid.uuid4())
            ids.append(task_id)
            entries.append({"Id": str(n), "MessageBody": encode(task, kwargs, queue, task_id)})
        resp = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if resp.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {resp['Failed'][:2]}")
    return ids
