"""`python -m ecs deploy / plan / destroy` of the jobs' schedules, under moto in process.

Every request to EventBridge Scheduler is recorded with botocore's `provide-client-params`
hook (tests.test_ecs_deploy.FakeAwsClients) and asserted as sent, so fields moto might
not keep (Input, DeadLetterConfig, RetryPolicy) are checked where AWS would get them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ecs import schedules as ecs_schedules
from tasks.jobkit.schedules import Schedule
from tests.conftest import ROOT
from tests.envelopes import receive_offline
from tests.test_ecs_deploy import ACCOUNT, REGION, aws, engine, progress, run  # noqa: F401

QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:t1-jobs"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:t1-jobs-dlq"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/t1-scheduler"
GROUP = "t1-schedules"
GROUP_ARN = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{GROUP}"
WRITES = {
    "CreateSchedule",
    "UpdateSchedule",
    "DeleteSchedule",
    "CreateScheduleGroup",
    "DeleteScheduleGroup",
}


def declared(*items: tuple[str, str, dict]) -> dict[str, Schedule]:
    """Schedules as @job would bind them (name, expression, kwargs) on tasks.debug.add."""
    return {
        name: Schedule(expr, kwargs, name, "tasks.debug.add", "tasks.debug")
        for name, expr, kwargs in items
    }


@pytest.fixture
def wanted(monkeypatch):
    """What the job modules declare, as a test sets it."""
    current: dict[str, Schedule] = {}
    monkeypatch.setattr(ecs_schedules, "deployed_schedules", lambda *_: dict(current))
    return current


def schedule_lines(output: str) -> dict[str, str]:
    """{schedule name: verb} of the plan's or deploy's `schedule` lines."""
    return {
        line[41:].split()[0]: line.split()[0]
        for line in output.splitlines()
        if line[13:41].strip() == "schedule"
    }


def scheduler_calls(aws, since: int = 0) -> list:  # noqa: F811
    return [r for r in aws.requests[since:] if r.service == "scheduler"]


def expected_request(name: str, expression: str, kwargs: dict) -> dict:
    return {
        "Name": name,
        "GroupName": GROUP,
        "Description": "t1: tasks.debug.add",
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Target": {
            "Arn": QUEUE_ARN,
            "RoleArn": ROLE_ARN,
            "Input": json.dumps(
                {
                    "attempt": "<aws.scheduler.attempt-number>",
                    "execution_id": "<aws.scheduler.execution-id>",
                    "kwargs": kwargs,
                    "schedule": "<aws.scheduler.schedule-arn>",
                    "scheduled": 1,
                    "scheduled_time": "<aws.scheduler.scheduled-time>",
                    "task": "tasks.debug.add",
                },
                sort_keys=True,
                separators=(",", ":"),
            ),
            "DeadLetterConfig": {"Arn": DLQ_ARN},
            "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10},
        },
    }


def test_no_declared_schedules_still_means_the_group_and_role_deferred_jobs_need(
    aws,  # noqa: F811
    engine,  # noqa: F811
    wanted,
):
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert "schedule" not in progress(output)
    assert progress(output)["schedule group"] == "created"
    assert [r.operation for r in scheduler_calls(aws)] == [
        "GetScheduleGroup",
        "CreateScheduleGroup",
    ]
    assert aws.iam.get_role(RoleName="t1-scheduler")["Role"]["RoleName"] == "t1-scheduler"


def test_deploy_creates_updates_and_deletes_schedules_idempotently(aws, engine, wanted):  # noqa: F811
    wanted.update(
        declared(
            ("add-every-15", "rate(15 minutes)", {"x": 1, "y": 2}),
            ("add-at-six", "cron(0 6 * * ? *)", {"x": 6, "y": 0}),
        )
    )
    code, output = run(aws, engine, "plan")
    assert code == 0, output
    assert schedule_lines(output) == {"add-every-15": "create", "add-at-six": "create"}, output
    assert not [r for r in scheduler_calls(aws) if r.operation in WRITES]

    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    steps = progress(output)
    assert (steps["schedule group"], steps["schedule"]) == ("created", "created")
    sent = {
        r.params["Name"]: r.params for r in scheduler_calls(aws) if r.operation == "CreateSchedule"
    }
    assert sent == {
        "add-every-15": expected_request("add-every-15", "rate(15 minutes)", {"x": 1, "y": 2}),
        "add-at-six": expected_request("add-at-six", "cron(0 6 * * ? *)", {"x": 6, "y": 0}),
    }
    (group,) = [r.params for r in scheduler_calls(aws) if r.operation == "CreateScheduleGroup"]
    assert group == {
        "Name": GROUP,
        "Tags": [{"Key": "stack", "Value": "t1"}, {"Key": "app", "Value": "sqs-jobs"}],
    }
    # the role: EventBridge Scheduler for this group only; SendMessage on the two queues only
    role = aws.iam.get_role(RoleName="t1-scheduler")["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": GROUP_ARN},
    }
    policy = aws.iam.get_role_policy(RoleName="t1-scheduler", PolicyName="least-privilege")[
        "PolicyDocument"
    ]
    assert sorted((tuple(s["Action"]), s["Resource"]) for s in policy["Statement"]) == [
        (("sqs:SendMessage",), QUEUE_ARN),
        (("sqs:SendMessage",), DLQ_ARN),
    ]

    # what EventBridge sends when it fires is a job the worker accepts
    arn = aws.scheduler.get_schedule(GroupName=GROUP, Name="add-every-15")["Arn"]
    body = (
        sent["add-every-15"]["Target"]["Input"]
        .replace("<aws.scheduler.schedule-arn>", arn)
        .replace("<aws.scheduler.scheduled-time>", "2026-12-01T06:00:00Z")
        .replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3")
        .replace("<aws.scheduler.attempt-number>", "1")
    )
    received = receive_offline(body)
    assert received.verdict is None and received.task == "tasks.debug.add"
    assert received.message.decode()[1] == {"x": 1, "y": 2}

    # a second deploy writes nothing
    before = len(aws.requests)
    code, output = run(aws, engine, "deploy")
    assert code == 0 and "nothing changed" in output, output
    assert not [r for r in scheduler_calls(aws, before) if r.operation in WRITES]

    # one changed, one removed, one added: update, delete, create; the rest left alone
    wanted.clear()
    wanted.update(
        declared(
            ("add-every-15", "rate(30 minutes)", {"x": 1, "y": 2}),
            ("add-hourly", "rate(1 hour)", {"x": 0, "y": 0}),
        )
    )
    code, output = run(aws, engine, "plan")
    assert schedule_lines(output) == {
        "add-every-15": "update",
        "add-hourly": "create",
        "add-at-six": "delete",
    }, output
    assert "1 to delete" in output
    before = len(aws.requests)
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    writes = [
        (r.operation, r.params.get("Name"))
        for r in scheduler_calls(aws, before)
        if r.operation in WRITES
    ]
    assert sorted(writes) == [
        ("CreateSchedule", "add-hourly"),
        ("DeleteSchedule", "add-at-six"),
        ("UpdateSchedule", "add-every-15"),
    ]
    (update,) = [r.params for r in scheduler_calls(aws, before) if r.operation == "UpdateSchedule"]
    assert update == expected_request("add-every-15", "rate(30 minutes)", {"x": 1, "y": 2})
    listed = aws.scheduler.list_schedules(GroupName=GROUP)["Schedules"]
    assert sorted(s["Name"] for s in listed) == ["add-every-15", "add-hourly"]
    before = len(aws.requests)
    code, output = run(aws, engine, "deploy")
    assert code == 0 and "nothing changed" in output, output
    assert not [r for r in scheduler_calls(aws, before) if r.operation in WRITES]

    # destroy: the schedules, the group and the role go, first of all
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[1:4] == [
        "  deleted    schedule                     add-every-15",
        "  deleted    schedule                     add-hourly",
        "  deleted    schedule group               t1-schedules",
    ], output
    assert aws.scheduler.list_schedule_groups(NamePrefix=GROUP)["ScheduleGroups"] == []
    assert "t1-scheduler" not in [r["RoleName"] for r in aws.iam.list_roles()["Roles"]]
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0 and "absent     schedule group" in output


def test_a_schedule_changed_outside_deploy_is_put_back(aws, engine, wanted):  # noqa: F811
    wanted.update(declared(("add-every-15", "rate(15 minutes)", {"x": 1, "y": 2})))
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    current = aws.scheduler.get_schedule(GroupName=GROUP, Name="add-every-15")
    target = dict(current["Target"])
    target.pop("DeadLetterConfig")  # someone removed the DLQ by hand
    aws.scheduler.update_schedule(
        Name="add-every-15",
        GroupName=GROUP,
        ScheduleExpression="rate(15 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=target,
    )
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert progress(output)["schedule"] == "updated"
    assert "Target.DeadLetterConfig differ" in output
    again = aws.scheduler.get_schedule(GroupName=GROUP, Name="add-every-15")
    assert again["Target"]["DeadLetterConfig"] == {"Arn": DLQ_ARN}


def test_only_the_deployed_job_modules_schedules_are_deployed():
    """The demo schedule of `make run` (JOBS_EXTRA_MODULES) is registered but never deployed;
    in a process of its own, so this session's registry stays as it was."""
    code = (
        "import json; from ecs.schedules import deployed_schedules; "
        "from tasks.jobkit.registry import all_schedules; "
        "print(json.dumps([sorted(all_schedules()), sorted(deployed_schedules())]))"
    )
    env = {**os.environ, "JOBS_EXTRA_MODULES": "tasks.demo_schedules"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    registered, deployed = json.loads(out.strip().splitlines()[-1])
    assert "tasks.demo_schedules.heartbeat-0" in registered
    assert "tasks.demo_schedules.heartbeat-0" not in deployed


def test_create_schedule_waits_for_the_scheduler_role_to_propagate(aws, engine, wanted):  # noqa: F811
    from tests.test_ecs_consistency import refuse
    from tests.test_ecs_deploy import waits

    calls = {"n": 0}

    def first_two(params):  # what EventBridge Scheduler answers while IAM propagates
        calls["n"] += 1
        return (
            (
                "ValidationException",
                "The execution role you provide must allow AWS "
                "EventBridge Scheduler to assume the role.",
            )
            if calls["n"] <= 2
            else None
        )

    wanted.update(declared(("add-every-15", "rate(15 minutes)", {"x": 1, "y": 2})))
    refused = refuse(aws.scheduler, "CreateSchedule", first_two)
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert len(refused) == 2 and progress(output)["schedule"] == "created"
    assert any("must allow AWS EventBridge Scheduler" in line for line in waits(output, "schedule"))
