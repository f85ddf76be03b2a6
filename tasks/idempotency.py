"""Guarding side effects against SQS's at-least-once delivery."""

from __future__ import annotations

from botocore.exceptions import ClientError

from tasks.backend import DynamoDBJobBackend, utc_now


def first_time(backend: DynamoDBJobBackend, key: str) -> bool:
    """True exactly once per key: a conditional put of a marker item in the jobs table."""
    item = {"job_id": {"S": f"once:{key}"}, "created_at": {"S": utc_now()}}
    expires_at = backend._expires_at()
    if expires_at:
        item["expires_at"] = expires_at
    try:
        backend.client.put_item(
            TableName=backend.table, Item=item,
            ConditionExpression="attribute_not_exists(job_id)",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True
