"""`ecs deploy` / `destroy` and deferred jobs' one-time schedules (issue 20, item 6), on moto.

The worker defers into the stack's schedule group with the scheduler role, so deploy makes
both even when no job declares a schedule, hands their names to the worker, and leaves the
worker's `job-*` schedules alone; destroy deletes them with the group (DeleteScheduleGroup
deletes every schedule in the group, as its API reference says and moto does).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ecs.stack import Options, Stack
from tasks.ops import one_time_schedules as ots
from tasks.ops.settings import Settings
from tests.test_ecs_deploy import ACCOUNT, REGION, aws, engine, run  # noqa: F401
from tests.test_schedules_deploy import scheduler_calls, wanted  # noqa: F401

GROUP = "t1-schedules"


def test_the_worker_is_told_its_group_and_role_and_may_use_only_them():
    stack = Stack("t1", REGION, ACCOUNT, Options())
    env = stack.worker_environment()
    assert env["JOBS_SCHEDULE_GROUP"] == GROUP
    assert env["JOBS_SCHEDULER_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/t1-scheduler"
    settings = Settings.from_env(env)
    assert ots.enabled(settings)
    assert ots.queue_arn(settings, settings.queue_name) == stack.queue_arn
    assert ots.queue_arn(settings, settings.dlq_name) == stack.dlq_arn


def test_deploy_keeps_deferred_jobs_schedules_and_destroy_removes_them_with_the_group(
    aws,  # noqa: F811
    engine,  # noqa: F811
    wanted,  # noqa: F811
):
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    task_policy = aws.iam.get_role_policy(RoleName="t1-task", PolicyName="least-privilege")
    document = task_policy["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    assert "DeferJobs" in {s.get("Sid") for s in document["Statement"]}

    settings = Settings.from_env(Stack("t1", REGION, ACCOUNT, Options()).worker_environment())
    at = datetime.now(UTC) + timedelta(days=10)
    ots.create(settings, name="job-waiting-0", at=at, body="eyJ9", scheduler=aws.scheduler)
    before = len(aws.requests)
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert not [r for r in scheduler_calls(aws, before) if r.operation == "DeleteSchedule"]
    assert aws.scheduler.get_schedule(GroupName=GROUP, Name="job-waiting-0")

    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    (line,) = [x for x in output.splitlines() if "schedule group" in x]
    assert "deleted" in line and "with 1 deferred job(s) waiting in it" in line, output
    assert aws.scheduler.list_schedule_groups(NamePrefix=GROUP)["ScheduleGroups"] == []
