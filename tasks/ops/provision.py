"""Idempotent creation of the jobs table, the queue and its dead-letter queue.

The same functions run against the emulator (`make run`, tests) and AWS
(`python -m ecs deploy`). Each looks a resource up before creating it and
reports what it did, because AWS rejects duplicates where emulators often
do not: an error is never used to detect existence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from botocore.exceptions import ClientError

Outcome = Literal["created", "updated", "unchanged"]

# SQS's largest message since 2025 (1 MiB); the shim sizes requests from it.
MAX_MESSAGE_BYTES = 1_048_576
# SQS keeps messages at most 14 days; keep them that long so nothing expires unseen.
RETENTION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class QueuePair:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    outcome: Outcome


@dataclass(frozen=True)
class Table:
    name: str
    arn: str
    outcome: Outcome


def _queue_url(sqs, name: str) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return None
        raise


def _ensure_queue(
    sqs, name: str, attributes: dict[str, str], tags: dict[str, str]
) -> tuple[str, Outcome]:
    url = _queue_url(sqs, name)
    if url is None:
        url = sqs.create_queue(QueueName=name, Attributes=attributes, tags=tags)["QueueUrl"]
        return url, "created"
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    changed = {k: v for k, v in attributes.items() if not _same_attribute(k, current.get(k), v)}
    if changed:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=changed)
        return url, "updated"
    return url, "unchanged"


def _same_attribute(key: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if key == "RedrivePolicy":
        a, b = json.loads(current), json.loads(wanted)
        return a["deadLetterTargetArn"] == b["deadLetterTargetArn"] and int(
            a["maxReceiveCount"]
        ) == int(b["maxReceiveCount"])
    return str(current) == str(wanted)


def ensure_queues(
    sqs,
    queue_name: str,
    dlq_name: str,
    *,
    visibility_timeout: int = 300,
    max_receive_count: int = 5,
    tags: dict[str, str] | None = None,
) -> QueuePair:
    """Create or align the work queue and its dead-letter queue."""
    tags = tags or {}
    dlq_url, dlq_outcome = _ensure_queue(
        sqs, dlq_name, {"MessageRetentionPeriod": str(RETENTION_SECONDS)}, tags
    )
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(visibility_timeout),
        "MessageRetentionPeriod": str(RETENTION_SECONDS),
        "MaximumMessageSize": str(MAX_MESSAGE_BYTES),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
        ),
    }
    queue_url, outcome = _ensure_queue(sqs, queue_name, attributes, tags)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    if outcome == "unchanged" and dlq_outcome != "unchanged":
        outcome = "updated"
    return QueuePair(queue_url, queue_arn, dlq_url, dlq_arn, outcome)


def ensure_table(dynamodb, name: str, *, tags: dict[str, str] | None = None) -> Table:
    """Create the jobs table (on demand, TTL on `expires_at`) if it is missing."""
    outcome: Outcome = "unchanged"
    try:
        desc = dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        kwargs = {}
        if tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        desc = dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            **kwargs,
        )["TableDescription"]
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        outcome = "created"
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        if outcome == "unchanged":
            outcome = "updated"
    return Table(name, desc["TableArn"], outcome)


def provision(settings, *, tags: dict[str, str] | None = None) -> tuple[QueuePair, Table]:
    """Everything the worker needs, from the deployment settings."""
    from tasks.ops.clients import dynamodb_client, sqs_client

    queues = ensure_queues(
        sqs_client(settings),
        settings.queue_name,
        settings.dlq_name,
        visibility_timeout=settings.visibility_timeout,
        max_receive_count=settings.max_receive_count,
        tags=tags,
    )
    table = ensure_table(dynamodb_client(settings), settings.table_name, tags=tags)
    return queues, table


def main() -> None:
    from tasks.ops.settings import Settings

    settings = Settings.from_env()
    queues, table = provision(settings)
    print(f"queue  {settings.queue_name}: {queues.outcome} ({queues.queue_url})")
    print(f"dlq    {settings.dlq_name}: {queues.queue_url and 'ok'} ({queues.dlq_url})")
    print(f"table  {table.name}: {table.outcome}")


if __name__ == "__main__":
    main()
