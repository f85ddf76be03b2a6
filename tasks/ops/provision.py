"""Idempotent creation of the jobs table, the queue, its dead-letter queue and the bucket.

The same functions run against the emulator (`make run`, tests) and AWS
(`python -m ecs deploy`). Each looks a resource up before creating it and
reports what it did, because AWS rejects duplicates where emulators often
do not: an error is never used to detect existence.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

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
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
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


LIST_INDEX = "by_status"
# The listing index (tasks.results.listing): sparse, only job items carry list_pk; it
# projects what a listing shows, so a write that changes nothing else costs it nothing.
LIST_INDEX_ATTRIBUTES = [
    {"AttributeName": "list_pk", "AttributeType": "S"},
    {"AttributeName": "created_at", "AttributeType": "S"},
]
LIST_PROJECTED = ["status", "task", "updated_at", "submitted_at", "started_at", "finished_at"]
# A status's partitions ("<status>#<shard>"): JOBS_LIST_SHARDS of them, each named by one hex
# digit, a job's taken from its id's last hex digit (tasks.results.index_key). One by default:
# a partition takes ~1,000 write units/s, and a `created_at` sort key keeps DynamoDB from
# splitting it for heat, so more shards are for over ~1,000 finished jobs/s of one status.
LIST_SHARD_DIGITS = "0123456789abcdef"
MAX_LIST_SHARDS = len(LIST_SHARD_DIGITS)


def list_shard_names(shards: int) -> str:
    """Every shard's name in order ("0123" for 4): the listing templates walk them."""
    if not 1 <= shards <= MAX_LIST_SHARDS:
        raise ValueError(f"list shards={shards}: expected 1 to {MAX_LIST_SHARDS}")
    return LIST_SHARD_DIGITS[:shards]


def list_shard_by_digit(shards: int) -> str:
    """The shard of each last hex digit 0-f, as 16 characters (the revoke template)."""
    names = list_shard_names(shards)
    return "".join(names[i % shards] for i in range(MAX_LIST_SHARDS))


def list_index() -> dict[str, Any]:
    return {
        "IndexName": LIST_INDEX,
        "KeySchema": [
            {"AttributeName": "list_pk", "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": LIST_PROJECTED},
    }


def wait_for_list_index(dynamodb, name: str, *, timeout: float = 900.0) -> None:
    """Until the listing index is ACTIVE (an index added to a full table backfills first)."""
    deadline = time.monotonic() + timeout
    while True:
        table = dynamodb.describe_table(TableName=name)["Table"]
        status = next(
            (
                index.get("IndexStatus")
                for index in table.get("GlobalSecondaryIndexes") or []
                if index.get("IndexName") == LIST_INDEX
            ),
            None,
        )
        if status in (None, "ACTIVE"):  # None: an emulator that does not report it
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"index {LIST_INDEX} of table {name} is still {status}")
        time.sleep(2)


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
            AttributeDefinitions=[
                {"AttributeName": "job_id", "AttributeType": "S"},
                *LIST_INDEX_ATTRIBUTES,
            ],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[list_index()],
            BillingMode="PAY_PER_REQUEST",
            **kwargs,
        )["TableDescription"]
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        outcome = "created"
    else:
        if not any(
            index.get("IndexName") == LIST_INDEX
            for index in desc.get("GlobalSecondaryIndexes") or []
        ):
            # A table from before the listing: add the index (its items gain list_pk with
            # their next status write; older finished jobs stay unlisted until they expire).
            dynamodb.update_table(
                TableName=name,
                AttributeDefinitions=LIST_INDEX_ATTRIBUTES,
                GlobalSecondaryIndexUpdates=[{"Create": list_index()}],
            )
            outcome = "updated"
    if outcome != "unchanged":
        wait_for_list_index(dynamodb, name)
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        if outcome == "unchanged":
            outcome = "updated"
    return Table(name, desc["TableArn"], outcome)


# The claim check's bucket (tasks.results.large_objects): results at results/<job_id>.json,
# arguments at payloads/<task_id>.json.
RESULTS_PREFIX = "results/"
PAYLOADS_PREFIX = "payloads/"
DAY_SECONDS = 86_400
# Multipart uploads nobody completed (a worker killed mid-PUT) are charged until aborted.
ABORT_MULTIPART_DAYS = 1


@dataclass(frozen=True)
class Bucket:
    name: str
    arn: str
    outcome: Outcome


def object_days(record_seconds: int) -> int:
    """Days an object lives so that it outlives the record that points at it.

    S3 counts expiry in whole days and rounds the moment up to the next midnight UTC, so
    an object written with its record lives at least `ceil(ttl / 86400)` days, i.e. at
    least the record's TTL (`expires_at` = the write + ttl seconds), and at most a day
    more. DynamoDB deletes expired items within a few days; until then a read may still
    find the record and, for that margin, no object (an error says so, never a crash)."""
    return max(1, math.ceil(record_seconds / DAY_SECONDS))


def payload_days(record_seconds: int) -> int:
    """Arguments wait with their message: at least the queue's retention (14 days)."""
    return max(object_days(record_seconds), math.ceil(RETENTION_SECONDS / DAY_SECONDS))


def bucket_lifecycle(record_seconds: int) -> list[dict]:
    return [
        {
            "ID": "results-expire-with-records",
            "Status": "Enabled",
            "Filter": {"Prefix": RESULTS_PREFIX},
            "Expiration": {"Days": object_days(record_seconds)},
        },
        {
            "ID": "payloads-expire-with-messages",
            "Status": "Enabled",
            "Filter": {"Prefix": PAYLOADS_PREFIX},
            "Expiration": {"Days": payload_days(record_seconds)},
        },
        {
            "ID": "abort-incomplete-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        },
    ]


BUCKET_ENCRYPTION = {
    "Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
    ]
}
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
OWNERSHIP = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def _s3_config(read, key: str, missing: tuple[str, ...]) -> object:
    """One of a bucket's configurations, or None where S3 says it has none."""
    try:
        return read()[key]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in missing:
            return None
        raise


def bucket_exists(s3, name: str) -> bool:
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise RuntimeError(
                f"S3 bucket {name} exists but this account may not use it: bucket names are "
                "global, so another account may own it (choose another JOBS_BUCKET or stack "
                "name), or the caller lacks s3:ListBucket on it"
            ) from exc
        raise
    return True


def bucket_differences(s3, name: str, record_seconds: int) -> list[str]:
    """The configurations of an existing bucket that are not what ensure_bucket sets."""
    out = []
    encryption = _s3_config(
        lambda: s3.get_bucket_encryption(Bucket=name),
        "ServerSideEncryptionConfiguration",
        ("ServerSideEncryptionConfigurationNotFoundError",),
    )
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        for r in (encryption or {}).get("Rules", [])
    ]
    if not algorithms or not all(a in ("AES256", "aws:kms") for a in algorithms):
        out.append("encryption")
    block = _s3_config(
        lambda: s3.get_public_access_block(Bucket=name),
        "PublicAccessBlockConfiguration",
        ("NoSuchPublicAccessBlockConfiguration",),
    )
    if block != PUBLIC_ACCESS_BLOCK:
        out.append("public access block")
    ownership = _s3_config(
        lambda: s3.get_bucket_ownership_controls(Bucket=name),
        "OwnershipControls",
        ("OwnershipControlsNotFoundError",),
    )
    if ownership != OWNERSHIP:
        out.append("ownership")
    rules = _s3_config(
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=name),
        "Rules",
        ("NoSuchLifecycleConfiguration",),
    )
    if _lifecycle_key(rules or []) != _lifecycle_key(bucket_lifecycle(record_seconds)):
        out.append("lifecycle")
    return out


def _lifecycle_key(rules: list[dict]) -> list[tuple]:
    # S3 echoes rules back with extra empty fields: compare what ensure_bucket sets.
    return sorted(
        (
            r.get("ID"),
            r.get("Status"),
            (r.get("Filter") or {}).get("Prefix", ""),
            (r.get("Expiration") or {}).get("Days"),
            (r.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"),
        )
        for r in rules
    )


def ensure_bucket(
    s3,
    name: str,
    region: str,
    *,
    record_seconds: int,
    tags: dict[str, str] | None = None,
    partition: str = "aws",
) -> Bucket:
    """Create or align the bucket of large results and arguments: encrypted (SSE-S3), no
    public access, owner-enforced, objects expiring with their records."""
    outcome: Outcome = "unchanged"
    if not bucket_exists(s3, name):
        kwargs: dict = {}
        if region != "us-east-1":  # us-east-1 refuses its own name as a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced", **kwargs)
        if tags:
            s3.put_bucket_tagging(
                Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )
        changes = ["encryption", "public access block", "ownership", "lifecycle"]
        outcome = "created"
    else:
        changes = bucket_differences(s3, name, record_seconds)
        if changes:
            outcome = "updated"
    if "public access block" in changes:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    if "encryption" in changes:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=BUCKET_ENCRYPTION)
    if "ownership" in changes:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=OWNERSHIP)
    if "lifecycle" in changes:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": bucket_lifecycle(record_seconds)}
        )
    return Bucket(name, f"arn:{partition}:s3:::{name}", outcome)


def provision(settings, *, tags: dict[str, str] | None = None) -> tuple[QueuePair, Table]:
    """Everything the worker needs, from the deployment settings."""
    from tasks.ops.clients import dynamodb_client, s3_client, sqs_client

    queues = ensure_queues(
        sqs_client(settings),
        settings.queue_name,
        settings.dlq_name,
        visibility_timeout=settings.visibility_timeout,
        max_receive_count=settings.max_receive_count,
        tags=tags,
    )
    table = ensure_table(dynamodb_client(settings), settings.table_name, tags=tags)
    ensure_bucket(
        s3_client(settings),
        settings.bucket_name,
        settings.region,
        record_seconds=settings.result_expires,
        tags=tags,
    )
    if settings.local:  # deferred jobs' schedules (on AWS, `ecs deploy` makes the group)
        from tasks.ops.one_time_schedules import ensure_group

        ensure_group(settings)
    return queues, table


def main() -> None:
    from tasks.ops.settings import Settings

    settings = Settings.from_env()
    queues, table = provision(settings)
    print(f"queue  {settings.queue_name}: {queues.outcome} ({queues.queue_url})")
    print(f"dlq    {settings.dlq_name}: {queues.queue_url and 'ok'} ({queues.dlq_url})")
    print(f"table  {table.name}: {table.outcome}")
    print(f"bucket {settings.bucket_name}")


if __name__ == "__main__":
    main()
