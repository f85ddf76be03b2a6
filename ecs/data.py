"""The jobs table, the queue, its DLQ and the bucket of large results and arguments: planned
read-only here, made by tasks.ops.provision."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from ecs.plan import Call, Context, Do, Step
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
        if exc.response["Error"]["Code"] in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
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
            same = a.get("deadLetterTargetArn") == b["deadLetterTargetArn"] and int(
                a.get("maxReceiveCount", 0)
            ) == int(b["maxReceiveCount"])
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
        indexed = any(
            index.get("IndexName") == LIST_INDEX
            for index in table.get("GlobalSecondaryIndexes") or []
        )
        changes = ([] if enabled else ["TTL on expires_at"]) + (
            [] if indexed else [f"index {LIST_INDEX} (GET /jobs)"]
        )
        action, detail = ("update", ", ".join(changes)) if changes else ("unchanged", "")

    def run(outputs):
        made = ensure_table(ddb, stack.table_name, tags=stack.tags)
        outputs["table_arn"] = made.arn
        return None

    name = {"TableName": stack.table_name}
    calls = (
        Call(
            "dynamodb",
            "CreateTable",
            {**name, "BillingMode": "PAY_PER_REQUEST", "Tags": stack.tags},
        ),
        Call("dynamodb", "UpdateTable", name),
        Call("dynamodb", "UpdateTimeToLive", name),
    )
    return Step(
        "dynamodb table",
        stack.table_name,
        action,
        detail,
        []
        if action == "unchanged"
        else [Do("tasks.ops.provision.ensure_table", run, calls[1:] if table else calls)],
        outputs={"table_arn": stack.table_arn},
    )


def plan_delete_table(ctx: Context) -> Step:
    stack = ctx.stack
    if ctx.keep_data:
        return Step("dynamodb table", stack.table_name, "kept")
    found = describe_table(ctx.clients.dynamodb, stack.table_name)
    if found is None:
        return Step("dynamodb table", stack.table_name, "absent")
    deleting = found.get("TableStatus") == "DELETING"
    return Step(
        "dynamodb table",
        stack.table_name,
        "delete",
        instructions=[]
        if deleting
        else [
            Call(
                "dynamodb",
                "DeleteTable",
                {"TableName": stack.table_name},
                ignore=("ResourceNotFoundException",),
            )
        ],
    )


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
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": stack.dlq_arn, "maxReceiveCount": str(o.max_receive_count)}
            ),
        }
        changed = _queue_differences(sqs, url, wanted) + [
            f"dlq {k}"
            for k in _queue_differences(
                sqs, dlq, {"MessageRetentionPeriod": str(RETENTION_SECONDS)}
            )
        ]
        action, detail = ("update", ", ".join(changed)) if changed else ("unchanged", "")

    def run(outputs):
        # ensure_queues looks each queue up first, so a retry after the DLQ was made only
        # makes the work queue.
        pair = retry_until(
            ensure_queues,
            sqs,
            stack.queue_name,
            stack.dlq_name,
            visibility_timeout=o.visibility_timeout,
            max_receive_count=o.max_receive_count,
            tags=stack.tags,
            retryable=queue_deleted_recently,
            deadline=QUEUE_NAME_REUSE_SECONDS,
            base=10.0,
            cap=10.0,
            clock=ctx.clock,
            progress=ctx.progress("sqs queue and dlq", stack.queue_name),
        )
        outputs.update(
            queue_url=pair.queue_url,
            queue_arn=pair.queue_arn,
            dlq_url=pair.dlq_url,
            dlq_arn=pair.dlq_arn,
        )
        return None

    known = {"queue_arn": stack.queue_arn, "dlq_arn": stack.dlq_arn}
    if url:
        known["queue_url"] = url
    if dlq:
        known["dlq_url"] = dlq
    calls = [
        Call("sqs", "CreateQueue", {"QueueName": n, "tags": stack.tags})
        for n, u in ((stack.dlq_name, dlq), (stack.queue_name, url))
        if u is None
    ]
    calls += [Call("sqs", "SetQueueAttributes", {"QueueUrl": u}) for u in (dlq, url) if u]
    return Step(
        "sqs queue and dlq",
        f"{stack.queue_name}, {stack.dlq_name}",
        action,
        detail,
        []
        if action == "unchanged"
        else [
            Do(
                "tasks.ops.provision.ensure_queues, retried while SQS holds a name "
                "deleted less than 60 s ago",
                run,
                tuple(calls),
            )
        ],
        outputs=known,
    )


def plan_delete_queues(ctx: Context) -> list[Step]:
    steps = []
    for name in (ctx.stack.queue_name, ctx.stack.dlq_name):
        url = queue_url(ctx.clients.sqs, name)
        steps.append(
            Step(
                "sqs queue",
                name,
                "delete" if url else "absent",
                instructions=[Call("sqs", "DeleteQueue", {"QueueUrl": url})] if url else [],
            )
        )
    return steps


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
        ensure_bucket(
            s3,
            stack.bucket_name,
            stack.region,
            record_seconds=ttl,
            tags=stack.tags,
            partition=stack.partition,
        )
        return None

    bucket = {"Bucket": stack.bucket_name}
    calls = tuple(
        Call("s3", op, bucket)
        for op in (
            "PutBucketOwnershipControls",
            "PutPublicAccessBlock",
            "PutBucketEncryption",
            "PutBucketLifecycleConfiguration",
        )
    )
    if action == "create":
        calls = (
            Call("s3", "CreateBucket", {**bucket, "ObjectOwnership": "BucketOwnerEnforced"}),
            Call("s3", "PutBucketTagging", bucket),
            *calls,
        )
    return Step(
        "s3 bucket",
        stack.bucket_name,
        action,
        detail,
        [] if action == "unchanged" else [Do("tasks.ops.provision.ensure_bucket", run, calls)],
        outputs={"bucket_arn": stack.bucket_arn},
    )


def plan_delete_bucket(ctx: Context) -> Step:
    """S3 deletes only an empty bucket: its objects and unfinished uploads go first."""
    stack, s3 = ctx.stack, ctx.clients.s3
    name = stack.bucket_name
    if ctx.keep_data:
        return Step("s3 bucket", name, "kept")
    if not bucket_exists(s3, name):
        return Step("s3 bucket", name, "absent")

    def empty(outputs):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:  # a page holds at most 1,000 keys, DeleteObjects' limit
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        return None

    bucket = {"Bucket": name}
    return Step(
        "s3 bucket",
        name,
        "delete",
        instructions=[
            Do(
                "empty the bucket, a page of keys at a time",
                empty,
                (
                    Call("s3", "ListObjectsV2", bucket),
                    Call("s3", "DeleteObjects", bucket),
                    Call("s3", "ListMultipartUploads", bucket),
                    Call("s3", "AbortMultipartUpload", bucket),
                ),
            ),
            Call("s3", "DeleteBucket", bucket),
        ],
    )
