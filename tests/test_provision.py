"""Provisioning is idempotent and sets what the worker relies on."""

from __future__ import annotations

import json

import boto3

from tasks.ops.provision import ensure_queues, ensure_table


def test_queues_with_redrive_policy_are_created_once(in_process_aws):
    sqs = boto3.client("sqs", region_name="us-east-1")
    first = ensure_queues(sqs, "q", "q-dlq", visibility_timeout=45, max_receive_count=4)
    assert first.outcome == "created"
    attrs = sqs.get_queue_attributes(QueueUrl=first.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "45"
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": first.dlq_arn,
        "maxReceiveCount": 4,
    }
    again = ensure_queues(sqs, "q", "q-dlq", visibility_timeout=45, max_receive_count=4)
    assert again.outcome == "unchanged" and again.queue_url == first.queue_url
    changed = ensure_queues(sqs, "q", "q-dlq", visibility_timeout=60, max_receive_count=4)
    assert changed.outcome == "updated"
    assert len(sqs.list_queues()["QueueUrls"]) == 2


def test_table_is_on_demand_with_ttl_and_created_once(in_process_aws):
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    assert ensure_table(ddb, "t", tags={"stack": "s"}).outcome == "created"
    desc = ddb.describe_table(TableName="t")["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert desc["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    ttl = ddb.describe_time_to_live(TableName="t")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    assert ensure_table(ddb, "t").outcome == "unchanged"
