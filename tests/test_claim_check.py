"""The claim check's units: the bucket provisioning makes, expiry that matches the records,
the templates and route of GET /jobs/{id}/result, and the gate's `payload_ref` header.

moto in process; the real processes are in tests/test_large_objects.py.
"""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import pytest
from celery import states
from jsonschema import Draft7Validator

import tasks  # noqa: F401  (registers the jobs)
from tasks.http_contract.forms import AwsTargets
from tasks.http_contract.mapping_templates import fill_template
from tasks.http_contract.openapi import build_openapi
from tasks.http_contract.vtl import Params, render
from tasks.jobkit.registry import all_jobs
from tasks.ops.provision import (
    DAY_SECONDS,
    RETENTION_SECONDS,
    ensure_bucket,
    object_days,
    payload_days,
)
from tests.test_ecs_deploy import aws, deployed, engine  # noqa: F401  (moto's AWS, one deploy)
from tests.test_templates import JOB_ID, velocity  # noqa: F401  (Apache Velocity 1.7)

TTL = 7 * DAY_SECONDS + 1  # a TTL that is not whole days: S3 rounds up


@pytest.fixture
def s3(in_process_aws):
    from tasks.ops.clients import s3_client
    from tasks.ops.settings import Settings

    return s3_client(Settings.from_env())


def rules_by_prefix(s3, bucket: str) -> dict[str, dict]:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return {r["Filter"]["Prefix"]: r for r in rules}


def test_the_bucket_is_private_encrypted_and_expires_with_the_records(s3):
    made = ensure_bucket(s3, "t-payloads", "us-east-1", record_seconds=TTL, tags={"app": "x"})
    assert made.outcome == "created" and made.arn == "arn:aws:s3:::t-payloads"
    rules = rules_by_prefix(s3, "t-payloads")
    assert rules["results/"]["Expiration"]["Days"] == math.ceil(TTL / 86400) == 8
    # A message (and so its arguments) may wait in the queue for its retention, 14 days.
    assert rules["payloads/"]["Expiration"]["Days"] == max(8, RETENTION_SECONDS // DAY_SECONDS)
    assert rules[""]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    assert all(r["Status"] == "Enabled" for r in rules.values())
    encryption = s3.get_bucket_encryption(Bucket="t-payloads")["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]["ApplyServerSideEncryptionByDefault"]
    assert encryption["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket="t-payloads")["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert s3.get_bucket_ownership_controls(Bucket="t-payloads")["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}
    ]
    # Idempotent: unchanged, then a new TTL moves the lifecycle along.
    assert ensure_bucket(s3, "t-payloads", "us-east-1", record_seconds=TTL).outcome == "unchanged"
    assert (
        ensure_bucket(s3, "t-payloads", "us-east-1", record_seconds=30 * DAY_SECONDS).outcome
        == "updated"
    )
    assert rules_by_prefix(s3, "t-payloads")["results/"]["Expiration"]["Days"] == 30
    assert rules_by_prefix(s3, "t-payloads")["payloads/"]["Expiration"]["Days"] == 30


def test_a_bucket_outside_us_east_1_names_its_region(s3):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("s3", region_name="eu-west-1")
    with Stubber(client) as stub:
        stub.add_client_error("head_bucket", "404", http_status_code=404)
        stub.add_response(
            "create_bucket",
            {},
            {
                "Bucket": "b",
                "ObjectOwnership": "BucketOwnerEnforced",
                "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"},
            },
        )
        for call in (
            "put_public_access_block",
            "put_bucket_encryption",
            "put_bucket_ownership_controls",
            "put_bucket_lifecycle_configuration",
        ):
            stub.add_response(call, {})
        ensure_bucket(client, "b", "eu-west-1", record_seconds=TTL)
        stub.assert_no_pending_responses()


def test_an_object_outlives_its_record_by_less_than_a_day(s3, monkeypatch):
    """The record's TTL (expires_at) and the object's lifecycle agree: S3 expires an object
    at the first midnight UTC after its creation + Days, and Days = ceil(ttl / 86400)."""
    from tasks import app
    from tasks.ops.provision import ensure_table
    from tasks.results.backend import MAX_RESULT_BYTES, DynamoDBJobBackend

    backend = DynamoDBJobBackend(app)
    ensure_table(backend.client, backend.table)
    ensure_bucket(
        s3, backend.settings.bucket_name, "us-east-1", record_seconds=backend.expires_seconds
    )
    request = SimpleNamespace(task="tasks.debug.echo", delivery_count=1, retries=0)
    backend.store_result("big-1", "y" * (MAX_RESULT_BYTES + 1), states.SUCCESS, request=request)
    item = backend.client.get_item(TableName=backend.table, Key={"job_id": {"S": "big-1"}})["Item"]
    expires_at = int(item["expires_at"]["N"])
    key = item["result_ref"]["M"]["key"]["S"]
    written = s3.head_object(Bucket=backend.settings.bucket_name, Key=key)["LastModified"]
    days = rules_by_prefix(s3, backend.settings.bucket_name)["results/"]["Expiration"]["Days"]
    assert (
        days == object_days(backend.expires_seconds) == math.ceil(backend.expires_seconds / 86400)
    )
    earliest = written.timestamp() + days * DAY_SECONDS  # before S3's round-up to midnight
    assert expires_at <= earliest + 2 and earliest - expires_at < DAY_SECONDS
    assert key.startswith("results/")
    assert backend.get_task_meta("big-1", cache=False)["result"] == "y" * (MAX_RESULT_BYTES + 1)
    backend.forget("big-1")
    assert s3.list_objects_v2(Bucket=backend.settings.bucket_name).get("KeyCount") == 0
    assert time.time() < expires_at


def test_groups_and_chords_read_a_result_kept_in_s3(s3):
    """chord_outcome and get_many read members through meta_from_item, S3 included."""
    from tasks import app
    from tasks.ops.provision import ensure_table
    from tasks.results.backend import MAX_RESULT_BYTES, DynamoDBJobBackend
    from tasks.results.chords import chord_values

    backend = DynamoDBJobBackend(app)
    ensure_table(backend.client, backend.table)
    ensure_bucket(s3, backend.settings.bucket_name, "us-east-1", record_seconds=3600)
    big = ["z" * 1000] * (MAX_RESULT_BYTES // 1000)
    backend.store_result("m-big", big, states.SUCCESS)
    backend.store_result("m-small", 7, states.SUCCESS)
    assert "result_ref" in backend.mget_items(["m-big"])["m-big"]
    metas = backend.read_metas(["m-big", "m-small"])
    header = app.GroupResult("g", [app.AsyncResult("m-big"), app.AsyncResult("m-small")])
    assert chord_values(header.results, metas) == [big, 7]
    assert dict(backend.get_many(["m-big", "m-small"], timeout=5))["m-big"]["result"] == big


def test_payloads_live_as_long_as_their_messages():
    assert payload_days(3600) == 14 and payload_days(30 * DAY_SECONDS) == 30
    assert (
        object_days(1) == 1 and object_days(DAY_SECONDS) == 1 and object_days(DAY_SECONDS + 1) == 2
    )


# --- HTTP: the record's result_url, and GET /jobs/{job_id}/result ---------------------------
REF_ITEM = {
    "status": {"S": "SUCCESS"},
    "task": {"S": "tasks.debug.echo"},
    "result_ref": {
        "M": {
            "bucket": {"S": "b"},
            "key": {"S": f"results/{JOB_ID}.json"},
            "size": {"N": "5000032"},
        }
    },
    "finished_at": {"S": "2026-12-01T00:00:00.000Z"},
}


def render_record(name: str, path: str) -> dict:
    template = fill_template(name, exposed=[])
    return json.loads(
        render(
            template,
            body=json.dumps({"Item": REF_ITEM}),
            params=Params(path={"job_id": JOB_ID}),
            context={"requestId": "r", "path": path},
        ).text
    )


def test_a_record_with_a_result_ref_answers_result_url_and_result_bytes():
    job = render_record("get_job.response", f"/v1/jobs/{JOB_ID}")
    assert job["result_url"] == f"/v1/jobs/{JOB_ID}/result"  # the stage kept
    assert job["result_bytes"] == 5000032 and "result" not in job
    assert (
        render_record("get_job.response", f"/jobs/{JOB_ID}")["result_url"]
        == f"/jobs/{JOB_ID}/result"
    )


def test_velocity_17_renders_the_result_url_the_same(velocity):  # noqa: F811
    template = fill_template("get_job.response", exposed=[])
    body = json.dumps({"Item": REF_ITEM})
    java = velocity(template, body, "r", f"/v1/jobs/{JOB_ID}", "/jobs/{job_id}", job_id=JOB_ID)
    ours = render(
        template,
        body=body,
        params=Params(path={"job_id": JOB_ID}),
        context={"requestId": "r", "path": f"/v1/jobs/{JOB_ID}"},
    ).text
    assert java == ours
    error = fill_template("get_job_result.error")
    for job_id in (JOB_ID, "not-a-uuid"):
        text, status = velocity(
            error, "<Error><Code>AccessDenied</Code></Error>", "r", job_id=job_id, with_status=True
        )
        mine = render(error, body="", params=Params(path={"job_id": job_id}), context={})
        assert (text, status) == (mine.text, mine.status_override)
    assert json.loads(mine.text)["message"].startswith("Malformed job id")


def test_the_result_route_is_an_s3_integration_behind_the_same_key():
    targets = AwsTargets(
        region="eu-west-1",
        account_id="123456789012",
        queue_name="q",
        table_name="t",
        role_arn="arn:aws:iam::123456789012:role/apigw",
        bucket_name="t1-123456789012-eu-west-1-payloads",
    )
    doc = build_openapi(targets, all_jobs(), api_key_required=True)
    route = doc["paths"]["/jobs/{job_id}/result"]
    get = route["get"]
    integration = get["x-amazon-apigateway-integration"]
    assert integration["type"] == "aws" and integration["httpMethod"] == "GET"
    assert integration["uri"] == (
        "arn:aws:apigateway:eu-west-1:s3:path/"
        "t1-123456789012-eu-west-1-payloads/results/{job_id}.json"
    )
    assert integration["requestParameters"] == {
        "integration.request.path.job_id": "method.request.path.job_id"
    }
    assert integration["credentials"] == targets.role_arn
    assert "responseTemplates" not in integration["responses"]["default"]  # passed through
    assert integration["responses"][r"4\d{2}"]["statusCode"] == "404"
    assert get["security"] == doc["paths"]["/jobs/{job_id}"]["get"]["security"]
    assert "security" not in route["options"]


# --- the gate accepts a well-formed payload_ref, and only that ----------------------------
@pytest.mark.parametrize(
    "ref, ok",
    [
        ({"bucket": "b-payloads", "key": "payloads/x.json", "size": 3, "sha256": "a" * 64}, True),
        ({"bucket": "b-payloads", "key": "payloads/x.json", "size": 3}, False),
        ({"bucket": "b-payloads", "key": "payloads/x.json", "size": -1, "sha256": "a" * 64}, False),
        ({"bucket": "b", "key": "k", "size": 3, "sha256": "a" * 64, "extra": 1}, False),
        ("s3://b/k", False),
    ],
)
def test_the_gate_checks_the_payload_ref_header(ref, ok):
    from tasks.worker.gate import HEADERS

    headers = {"id": JOB_ID, "task": "tasks.debug.echo", "payload_ref": ref}
    assert Draft7Validator(HEADERS).is_valid(headers) is ok


# --- ecs: deploy makes the bucket and hands it to the workers and the API; destroy empties it
def test_deploy_makes_the_bucket_and_destroy_empties_and_deletes_it(aws, engine, deployed):  # noqa: F811
    from ecs.stack import Stack
    from tests.test_ecs_deploy import ACCOUNT, REGION, STACK, run

    stack = Stack(STACK, REGION, ACCOUNT)
    name = stack.bucket_name
    assert name == f"{STACK}-{ACCOUNT}-{REGION}-payloads"
    rules = rules_by_prefix(aws.s3, name)
    assert rules["results/"]["Expiration"]["Days"] == 7  # the workers' 7-day TTL
    assert (
        aws.s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"][
            "RestrictPublicBuckets"
        ]
        is True
    )
    family = aws.ecs.describe_task_definition(taskDefinition=stack.family)["taskDefinition"]
    env = {e["name"]: e["value"] for e in family["containerDefinitions"][0]["environment"]}
    assert env["JOBS_BUCKET"] == name
    api = next(a for a in aws.apigateway.get_rest_apis()["items"] if a["name"] == STACK)
    resources = {
        r["path"]: r for r in aws.apigateway.get_resources(restApiId=api["id"], limit=500)["items"]
    }
    result = aws.apigateway.get_integration(
        restApiId=api["id"], resourceId=resources["/jobs/{job_id}/result"]["id"], httpMethod="GET"
    )
    assert result["uri"] == f"arn:aws:apigateway:{REGION}:s3:path/{name}/results/{{job_id}}.json"
    code, output = run(aws, engine, "deploy")
    assert code == 0 and "unchanged  s3 bucket" in output, output

    aws.s3.put_object(Bucket=name, Key="results/x.json", Body=b"{}")
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0 and "deleted    s3 bucket" in output, output
    assert name not in [b["Name"] for b in aws.s3.list_buckets()["Buckets"]]


def test_a_long_stack_name_still_makes_a_valid_bucket_name():
    from ecs.stack import Stack

    names = {
        Stack(f"a{'b' * 30}{i}", "ap-southeast-2", "123456789012").bucket_name for i in range(3)
    }
    assert len(names) == 3 and all(3 <= len(n) <= 63 and n == n.lower() for n in names)
