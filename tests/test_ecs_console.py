"""`python -m ecs console` against a stack deployed under moto: the AWS views, and the IAM
policy it documents (ecs/console-policy.json) allows every call its views and actions make,
and no more than its statements say (parliament, as the deployer's policy is checked)."""

from __future__ import annotations

import json
import re
import uuid
from types import SimpleNamespace

import boto3
import parliament
import pytest
from botocore.stub import Stubber
from celery import states

from console.app import create_app
from ecs.console_cmd import console_policy, console_source
from ecs.stack import Stack
from tests.test_ecs_deploy import ACCOUNT, REGION, aws, deployed, engine, run  # noqa: F401
from tests.test_ecs_observe import _celery_body

PREFIX = {
    "SQS": "sqs",
    "DynamoDB": "dynamodb",
    "ECS": "ecs",
    "CloudWatch": "cloudwatch",
    "Scheduler": "scheduler",
}


def iam_action(prefix: str, operation: str) -> str:
    """The IAM action an API call needs: SQS's batch calls need their single call's action
    (the SQS developer guide: "the permission for ... Batch is the same as for ...")."""
    if prefix == "sqs":
        operation = operation.removesuffix("Batch")
    return f"{prefix}:{operation}"


def record_calls(clients, services: list[str]) -> set[str]:
    """IAM action names ("sqs:GetQueueAttributes") of every call made through `clients`."""
    calls: set[str] = set()
    for name in services:
        client = getattr(clients, name)
        prefix = PREFIX[client.meta.service_model.service_id]
        client.meta.events.register(
            "before-call",
            lambda model, prefix=prefix, **_: calls.add(iam_action(prefix, model.name)),
        )
    return calls


def allowed(policy: dict) -> set[str]:
    return {action for s in policy["Statement"] for action in s["Action"]}


class Routed:
    """A client whose operations in `stubbed_ops` go to a Stubber's client (moto does not
    implement SQS's message move tasks), every other one to moto's."""

    def __init__(self, real, stubbed, stubbed_ops: set[str]) -> None:
        self.real, self.stubbed, self.stubbed_ops = real, stubbed, stubbed_ops

    def __getattr__(self, name: str):
        return getattr(self.stubbed if name in self.stubbed_ops else self.real, name)


def move_task(dlq_arn: str, queue_arn: str, status: str, moved: int) -> dict:
    """One ListMessageMoveTasks result, as the SQS API reference shapes it."""
    return {
        "TaskHandle": "eyJ0YXNrSWQiOiJ4In0=",
        "Status": status,
        "SourceArn": dlq_arn,
        "DestinationArn": queue_arn,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": 1,
        "StartedTimestamp": 1_765_040_400_000,
    }


def test_console_serves_the_aws_views_of_a_deployed_stack(aws, engine, deployed):  # noqa: F811
    stack = Stack("t1", REGION, ACCOUNT)
    aws.cloudwatch.set_alarm_state(
        AlarmName="t1-dead-letters", StateValue="ALARM", StateReason="1 dead letter"
    )
    dlq_url = aws.sqs.get_queue_url(QueueName="t1-jobs-dlq")["QueueUrl"]
    arn = {
        name: aws.sqs.get_queue_attributes(
            QueueUrl=aws.sqs.get_queue_url(QueueName=name)["QueueUrl"],
            AttributeNames=["QueueArn"],
        )["Attributes"]["QueueArn"]
        for name in ("t1-jobs", "t1-jobs-dlq")
    }
    moves = boto3.client("sqs", region_name=REGION)
    stub = Stubber(moves)
    listed = {"SourceArn": arn["t1-jobs-dlq"], "MaxResults": 1}
    stub.add_response("list_message_move_tasks", {"Results": []}, listed)
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "eyJ0YXNrSWQiOiJ4In0="},
        {"SourceArn": arn["t1-jobs-dlq"], "DestinationArn": arn["t1-jobs"]},
    )
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [move_task(arn["t1-jobs-dlq"], arn["t1-jobs"], "RUNNING", 0)]},
        listed,
    )
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [move_task(arn["t1-jobs-dlq"], arn["t1-jobs"], "COMPLETED", 1)]},
        listed,
    )
    stub.activate()
    clients = SimpleNamespace(
        sqs=Routed(aws.sqs, moves, {"start_message_move_task", "list_message_move_tasks"}),
        dynamodb=aws.dynamodb,
        ecs=aws.ecs,
        cloudwatch=aws.cloudwatch,
    )
    source = console_source(clients, stack)
    running, dead = str(uuid.uuid4()), str(uuid.uuid4())
    assert source.records().transition(running, states.STARTED, facts={"task": "tasks.debug.add"})
    # A dead letter whose record is FAILURE: the redrive resets it (DeleteItem).
    assert source.records().transition(dead, states.FAILURE, facts={"task": "tasks.debug.add"})
    aws.sqs.send_message(QueueUrl=dlq_url, MessageBody=_celery_body("tasks.debug.add", dead))
    calls = record_calls(aws, ["sqs", "dynamodb", "ecs", "cloudwatch"])
    # Before the Stubber's before-call handler, which answers and ends the event.
    moves.meta.events.register(
        "before-parameter-build", lambda model, **_: calls.add(f"sqs:{model.name}")
    )

    client = create_app(source).test_client()
    view = client.get("/console/api/now").get_json()
    assert view["kind"] == "aws" and view["dlq"] == 1
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    assert view["service"]["desired"] == service["desiredCount"]
    assert view["service"]["running"] == service["runningCount"]
    assert {"name": "t1-dead-letters", "state": "ALARM", "reason": "1 dead letter"} in view[
        "alarms"
    ]
    assert "alarm: t1-dead-letters" in view["attention"]
    page = client.get("/console/").get_data(as_text=True)
    assert "workers: running" in page and "t1-dead-letters" in page
    assert client.get("/console/api/chart").status_code == 200
    metrics = client.get("/console/api/metrics?range=day").get_json()
    assert metrics["source"] == "cloudwatch" and len(metrics["depth"]["labels"]) == 96
    assert client.get("/console/jobs?status=STARTED").status_code == 200
    assert client.get(f"/console/jobs/{running}").status_code == 200
    assert "redrive-progress" not in client.get("/console/dlq").get_data(as_text=True)

    confirm = client.get(f"/console/jobs/{running}/cancel").get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', confirm)[1]
    said = client.post(f"/console/jobs/{running}/cancel", data={"token": token})
    assert f"job {running} revoked (was STARTED)" in said.get_data(as_text=True)
    confirm = client.get("/console/dlq/redrive").get_data(as_text=True)
    assert "SQS moves them itself" in confirm
    said = client.post("/console/dlq/redrive", data={"token": token}).get_data(as_text=True)
    assert "started moving the messages of t1-jobs-dlq back to t1-jobs" in said
    assert "1 FAILURE record(s) reset" in said
    assert source.records().read(dead) == {}  # reset, so that the moved message runs
    progress = client.get("/console/dlq").get_data(as_text=True)
    assert re.search(
        r'id="redrive-progress"[^>]*>last redrive \(2025-12-06T\S+\): RUNNING,\s+moved 0 of 1',
        progress,
    )
    assert client.get("/console/api/redrive").get_json()["progress"]["status"] == "COMPLETED"
    stub.assert_no_pending_responses()

    # Every call the console made is one its policy allows.
    assert {"dynamodb:DeleteItem", "ecs:DescribeServices", "sqs:StartMessageMoveTask"} <= calls
    assert {"cloudwatch:GetMetricData", "cloudwatch:ListMetrics"} <= calls
    assert calls <= allowed(console_policy(stack)), calls - allowed(console_policy(stack))


def test_one_dead_letter_redrive_is_allowed_by_the_policy(aws, engine, deployed):  # noqa: F811
    stack = Stack("t1", REGION, ACCOUNT)
    dlq_url = aws.sqs.get_queue_url(QueueName="t1-jobs-dlq")["QueueUrl"]
    source = console_source(aws, stack)
    dead = str(uuid.uuid4())
    assert source.records().transition(dead, states.FAILURE, facts={"task": "tasks.debug.add"})
    aws.sqs.send_message(QueueUrl=dlq_url, MessageBody="not a celery message")
    aws.sqs.send_message(QueueUrl=dlq_url, MessageBody=_celery_body("tasks.debug.add", dead))
    message_id = next(m.message_id for m in source.dead_letters() if m.task_id == dead)
    calls = record_calls(aws, ["sqs", "dynamodb"])
    said = source.redrive_one(message_id)
    assert said.endswith("its FAILURE record was reset"), said
    assert source.queue_counts("t1-jobs-dlq")["visible"] == 1
    assert calls <= allowed(console_policy(stack)), calls - allowed(console_policy(stack))


def test_cancel_deletes_a_deferred_jobs_schedule_in_the_stacks_group(aws, engine, deployed):  # noqa: F811
    """A job deferred by the worker (tasks.worker.deferral: a one-time schedule in the
    stack's group, a SCHEDULED record): the console lists it with its eta, and its cancel
    deletes the schedule, as app.control.revoke does; the policy allows both."""
    from datetime import UTC, datetime, timedelta

    from tasks.ops import one_time_schedules

    stack = Stack("t1", REGION, ACCOUNT)
    source = console_source(aws, stack)
    settings = stack.worker_settings()
    job_id = str(uuid.uuid4())
    name = one_time_schedules.schedule_name(job_id)
    eta = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    assert one_time_schedules.create(
        settings, name=name, at=eta, body="{}", scheduler=aws.scheduler
    )
    eta_text = eta.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert source.records().mark_scheduled(
        job_id, task="tasks.debug.add", eta=eta_text, schedule=name
    )
    calls = record_calls(aws, ["sqs", "dynamodb", "scheduler"])

    client = create_app(source).test_client()
    listed = client.get("/console/jobs?status=SCHEDULED").get_data(as_text=True)
    assert f'<td class="eta">{eta_text}</td>' in listed
    confirm = client.get(f"/console/jobs/{job_id}/cancel").get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', confirm)[1]
    said = client.post(f"/console/jobs/{job_id}/cancel", data={"token": token})
    text = said.get_data(as_text=True)
    assert f"revoked (was SCHEDULED); its schedule {name} deleted" in text
    made = set(calls)  # the console's calls, not the check's below
    with pytest.raises(aws.scheduler.exceptions.ResourceNotFoundException):
        aws.scheduler.get_schedule(GroupName=stack.schedule_group, Name=name)

    policy = console_policy(stack)
    assert {"scheduler:DeleteSchedule", "dynamodb:BatchGetItem"} <= made
    assert made <= allowed(policy), made - allowed(policy)
    deletes = [s for s in policy["Statement"] if "scheduler:DeleteSchedule" in s["Action"]]
    assert [s["Resource"] for s in deletes] == [stack.deferred_schedules_arn_pattern]


def test_console_policy_is_this_stacks_least_privilege(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "console", "--print-policy")
    assert code == 0, output
    policy = json.loads(output)
    assert policy == console_policy(Stack("t1", REGION, ACCOUNT))
    writes = {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "sqs:SendMessage"}
    writes |= {"sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:StartMessageMoveTask"}
    writes |= {"sqs:ChangeMessageVisibility", "scheduler:DeleteSchedule"}
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        if resources == ["*"]:  # the one action IAM takes no resource for
            assert all(
                a.startswith("cloudwatch:Get") or a == "cloudwatch:ListMetrics"
                for a in statement["Action"]
            )
            continue
        for arn in resources:
            assert re.match(rf"arn:aws:\w+:{REGION}:{ACCOUNT}:\S*t1", arn), arn
        if set(statement["Action"]) & writes:
            assert statement["Sid"].startswith("Action"), statement  # named as an action's
    analysed = parliament.analyze_policy_string(json.dumps(policy), include_community_auditors=True)
    assert [f.issue for f in analysed.findings] == []
