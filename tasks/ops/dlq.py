"""Inspecting and redriving the dead-letter queue.

`python -m tasks.ops.dlq show` lists the messages (task, id, receive count, why
they were rejected); `python -m tasks.ops.dlq redrive` moves them back to the work
queue. `python -m ecs dlq` / `redrive` call the same functions on AWS.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass

from tasks.results.records import JobRecords

PEEK_ROUNDS = 50


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    task: str | None
    task_id: str | None


def decode_envelope(body: str) -> dict | None:
    """The kombu envelope of an SQS body (base64 JSON, or plain JSON), if it is one."""
    try:
        decoded = json.loads(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        try:
            decoded = json.loads(body)
        except ValueError:
            return None
    return decoded if isinstance(decoded, dict) else None


def describe(message: dict) -> DeadLetter:
    envelope = decode_envelope(message.get("Body", ""))
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    headers = headers if isinstance(headers, dict) else {}
    task = headers.get("task") if isinstance(headers.get("task"), str) else None
    task_id = headers.get("id") if isinstance(headers.get("id"), str) else None
    if isinstance(envelope, dict) and "scheduled" in envelope:  # a schedule's own message
        task, task_id = _scheduled_identity(envelope)
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message.get("Body", ""),
        receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
        task=task,
        task_id=task_id,
    )


def _scheduled_identity(fields: dict) -> tuple[str | None, str | None]:
    """Task and job id of a scheduled message (tasks.jobkit.schedules): its id is derived."""
    from tasks.jobkit.schedules import job_id

    task, schedule, when = (fields.get(k) for k in ("task", "schedule", "scheduled_time"))
    if not all(isinstance(v, str) for v in (task, schedule, when)):
        return (task if isinstance(task, str) else None), None
    try:
        return task, job_id(schedule, when)
    except UnicodeEncodeError:
        return task, None


def _receive(sqs, url: str, visibility: int) -> list[dict]:
    return sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        VisibilityTimeout=visibility,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    ).get("Messages", [])


def peek(sqs, dlq_url: str) -> list[DeadLetter]:
    """Every message in the DLQ, left there (received with visibility 0)."""
    seen: dict[str, DeadLetter] = {}
    empty_rounds = 0
    for _ in range(PEEK_ROUNDS):
        batch = _receive(sqs, dlq_url, 0)
        new = [m for m in batch if m["MessageId"] not in seen]
        for m in new:
            seen[m["MessageId"]] = describe(m)
        empty_rounds = 0 if new else empty_rounds + 1
        if empty_rounds >= 3:
            break
    return list(seen.values())


def drain(sqs, dlq_url: str) -> Iterator[DeadLetter]:
    """Receive (and hide) DLQ messages until none are left."""
    while True:
        batch = _receive(sqs, dlq_url, 60)
        if not batch:
            return
        yield from (describe(m) for m in batch)


def redrive(sqs, dynamodb, dlq_url: str, queue_url: str, table: str) -> int:
    """Move every DLQ message back to the work queue; returns how many moved.

    A job whose record is FAILURE (the gate's or a lost run's on the last receive) has it
    reset so that the message can run; any other record stays (tasks.results.transitions,
    `redrive`): a running job keeps its lease, so a message sent twice by a redrive that
    was interrupted and run again is a duplicate it refuses; a REVOKED job stays revoked."""
    records = JobRecords(lambda: dynamodb, table, None)
    moved = 0
    for letter in drain(sqs, dlq_url):
        if letter.task_id:
            records.reset_for_redrive(letter.task_id)
        sqs.send_message(QueueUrl=queue_url, MessageBody=letter.body)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        moved += 1
    return moved


def print_letters(letters: list[DeadLetter]) -> None:
    if not letters:
        print("the dead-letter queue is empty")
        return
    print(f"{'task id':38} {'task':32} receives")
    for letter in letters:
        print(
            f"{letter.task_id or '(unreadable)':38} {letter.task or '(unknown)':32} "
            f"{letter.receive_count}"
        )
    print(f"{len(letters)} message(s)")


def main(argv: list[str] | None = None) -> int:
    from tasks.ops.clients import dynamodb_client, queue_url, sqs_client
    from tasks.ops.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m tasks.ops.dlq", description=__doc__)
    parser.add_argument("action", choices=["show", "redrive"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    sqs = sqs_client(settings)
    dlq_url = sqs.get_queue_url(QueueName=settings.dlq_name)["QueueUrl"]
    if args.action == "show":
        print_letters(peek(sqs, dlq_url))
    else:
        moved = redrive(
            sqs, dynamodb_client(settings), dlq_url, queue_url(settings), settings.table_name
        )
        print(f"moved {moved} message(s) back to {settings.queue_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
