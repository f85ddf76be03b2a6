"""The jobs table, the queue, its DLQ and the bucket of large results and arguments: planned
read-only here, made by tasks.ops.provision."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from ecs.plan import Context, Step
from ecs.retry import queue_deleted_recently, retry_until
from tasks.ops.provision import (
    LIST_INDEX,
    MAX_MESSAGE_BYTES,
    RETENTION_SECONDS,
    bucket_differences,
    bucket_exists,
    ensure_bucket,
    ensure_queues,
    ensure_table,
)
from tasks.ops.settings import Settings

# SQS frees a deleted queue's name after 60 s; a little more for the clocks to agree.
QUEUE_NAME_REUSE_SECONDS = 90.0


def queue_url(sqs, name: str) -> str | None:
    """A queue's URL, or None: a lookup, never a create."""
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("AWS.SimpleQueueService.NonExistentQueue",
                                             "QueueDoesNotExist"):
            return None
        raise


def describe_table(dynamodb, name: str) -> dict | None:
    try:
        return dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def _queue_differences(sqs, url: str, wanted: dict[str, str]) -> list[str]:
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    out = []
    for key, value in wanted.items():
        have = current.get(key)
        if key == "RedrivePolicy" and have:
            a, b = json.loads(have), json.loads(value)
            same = (a.get("deadLetterTargetArn") == b["deadLetterTargetArn"]
                    and int(a.get("maxReceiveCount", 0)) == int(b["maxReceiveCount"]))
        else:
            same = have is not None and str(have) == str(value)
        if not same:
            out.append(key)
    return out


def plan_table(ctx: Context) -> Step:
    stack, ddb = ctx.stack, ctx.clients.dynamodb
    table = describe_table(ddb, stack.table_name)
    action, detail = "create", ""
    if table is not None:
        ttl = ddb.describe_time_to_live(TableName=stack.table_name)["TimeToLiveDescription"]
        enabled = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        indexed = any(index.get("IndexName") == LIST_INDEX
                      for index in table.get("GlobalSecondaryIndexes") or [])
        changes = ([] if enabled else ["TTL on expires_at"]) + (
            [] if indexed else [f"index {LIST_INDEX} (GET /jobs)"])
        action, detail = ("update", ", ".join(changes)) if changes else ("unchanged", "")

    def run(outputs):
        made = ensure_table(ddb, stack.table_name, tags=stack.tags)
        outputs["table_arn"] = made.arn
        return None

    return Step("dynamodb table", stack.table_name, action, detail,
                run=None if action == "unchanged" else run,
                outputs={"table_arn": stack.table_arn})


def plan_queues(ctx: Context) -> Step:
    stack, sqs = ctx.stack, ctx.clients.sqs
    o = stack.options
    dlq = queue_url(sqs, stack.dlq_name)
    url = queue_url(sqs, stack.queue_name)
    if dlq is None or url is None:
        missing = [n for n, u in ((stack.queue_name, url), (stack.dlq_name, dlq)) if u is None]
        action, detail = "create", "" if len(missing) == 2 else f"{missing[0]} missing"
    else:
        wanted = {
            "VisibilityTimeout": str(o.visibility_timeout),
            "MessageRetentionPeriod": str(RETENTION_SECONDS),
            "MaximumMessageSize": str(MAX_MESSAGE_BYTES),
            "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": stack.dlq_arn,
                                         "maxReceiveCount": str(o.max_receive_count)}),
        }
        changed = _queue_differences(sqs, url, wanted) + [
            f"dlq {k}" for k in _queue_differences(
                sqs, dlq, {"MessageRetentionPeriod": str(RETENTION_SECONDS)})]
        action, detail = ("update", ", ".join(changed)) if changed else ("unchanged", "")

    def run(outputs):
        # ensure_queues looks each queue up first, so a retry after the DLQ was made only
        # makes the work queue.
        pair = retry_until(ensure_queues, sqs, stack.queue_name, stack.dlq_name,
                           visibility_timeout=o.visibility_timeout,
                           max_receive_count=o.max_receive_count, tags=stack.tags,
                           retryable=queue_deleted_recently, deadline=QUEUE_NAME_REUSE_SECONDS,
                           base=10.0, cap=10.0, clock=ctx.clock,
                           progress=ctx.progress("sqs queue and dlq", stack.queue_name))
        outputs.update(queue_url=pair.queue_url, queue_arn=pair.queue_arn,
                       dlq_url=pair.dlq_url, dlq_arn=pair.dlq_arn)
        return None

    known = {"queue_arn": stack.queue_arn, "dlq_arn": stack.dlq_arn}
    if url:
        known["queue_url"] = url
    if dlq:
        known["dlq_url"] = dlq
    return Step("sqs queue and dlq", f"{stack.queue_name}, {stack.dlq_name}",
                action, detail, run=None if action == "unchanged" else run, outputs=known)


def record_seconds() -> int:
    """The records' TTL as the deployed workers have it (the task definition sets no
    JOBS_RESULT_EXPIRES: the default, 7 days); the bucket's objects expire with it."""
    return Settings().result_expires


def plan_bucket(ctx: Context) -> Step:
    stack, s3 = ctx.stack, ctx.clients.s3
    ttl = record_seconds()
    if not bucket_exists(s3, stack.bucket_name):
        action, detail = "create", ""
    else:
        changed = bucket_differences(s3, stack.bucket_name, ttl)
        action, detail = ("update", ", ".join(changed)) if changed else ("unchanged", "")

    def run(outputs):
        ensure_bucket(s3, stack.bucket_name, stack.region, record_seconds=ttl,
                      tags=stack.tags, partition=stack.partition)
        return None

    return Step("s3 bucket", stack.bucket_name, action, detail,
                run=None if action == "unchanged" else run,
                outputs={"bucket_arn": stack.bucket_arn})
