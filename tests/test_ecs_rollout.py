"""The rolling deploy: image, task definition, service, the rollout waited for, a smoke
task of the new revision when no task runs, and only then the API.

moto runs no task and no deployment: the fake ECS agent of tests/test_ecs_deploy.py plays
what DescribeServices and DescribeTasks say (scripted per test), and botocore's Stubber
plays the stopped tasks ECS reports after a failed rollout.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from ecs.rollout import rollout_verdict, start_verdict, stop_verdict, stopped_tasks
from ecs.stack import SMOKE_STARTED_BY, STOP_TIMEOUT, Stack
from tests.test_ecs_deploy import (  # noqa: F401
    ACCOUNT,
    REGION,
    TaskScript,
    aws,
    deployed,
    engine,
    progress,
    run,
    waits,
)

TD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/t1-worker"


def _order(output: str) -> list[str]:
    """The kinds of the steps that finished, in the order they did."""
    kinds = []
    for line in output.splitlines():
        if line.split(None, 1)[0:1] and line.split()[0] in (
            "created",
            "updated",
            "checked",
            "unchanged",
            "FAILED",
        ):
            kind = line[13:41].strip()
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def test_first_deploy_rolls_out_then_smoke_tests_then_opens_the_api(aws, engine, deployed):  # noqa: F811
    kinds = _order(deployed)
    sequence = [
        "container image",
        "ecs task definition",
        "ecs service",
        "ecs service rollout",
        "smoke task",
        "cloudwatch alarm",
        "api gateway rest api",
        "api gateway stage",
    ]
    assert [k for k in kinds if k in sequence] == sequence, deployed
    assert progress(deployed)["smoke task"] == "checked"
    assert "RUNNING and HEALTHY, then exited with code 0 on SIGTERM" in deployed

    (ran,) = aws.agent.calls("RunTask")
    task_def = aws.ecs.describe_task_definition(taskDefinition="t1-worker")["taskDefinition"]
    assert ran["taskDefinition"] == task_def["taskDefinitionArn"]
    assert ran["startedBy"] == SMOKE_STARTED_BY and ran["count"] == 1
    assert ran["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE", "weight": 1, "base": 0}
    ]
    (created,) = aws.agent.calls("CreateService")
    assert ran["networkConfiguration"] == created["networkConfiguration"]
    (stop,) = aws.agent.calls("StopTask")
    arn = aws.ecs.list_tasks(cluster="t1", startedBy=SMOKE_STARTED_BY)["taskArns"][0]
    assert stop["task"] == arn


def test_a_new_revision_is_smoke_tested_and_an_unchanged_one_is_not(aws, engine, deployed):  # noqa: F811
    assert run(aws, engine, "deploy")[0] == 0  # nothing changed: no task run
    assert len(aws.agent.calls("RunTask")) == 1
    (engine.root / "tasks" / "reports.py").write_text("JOBS = []\n")
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert progress(output)["ecs service rollout"] == "checked"
    assert progress(output)["smoke task"] == "checked"
    assert aws.agent.calls("RunTask")[-1]["taskDefinition"].endswith("t1-worker:2")


def test_plan_shows_the_checks_it_would_make(aws, engine, deployed):  # noqa: F811
    (engine.root / "tasks" / "reports.py").write_text("JOBS = []\n")
    code, output = run(aws, engine, "plan")
    assert code == 0
    steps = progress(output)
    assert (steps["ecs service rollout"], steps["smoke task"]) == ("check", "check"), output
    assert "2 to check" in output
    assert len(aws.agent.calls("RunTask")) == 1  # plan runs nothing


SMOKE_FAILURES = [
    # the worker crashes at start (an import error in a new module, say)
    (
        TaskScript(
            start=[
                {"lastStatus": "PENDING"},
                {"lastStatus": "RUNNING"},
                {"lastStatus": "STOPPED", "exitCode": 1},
            ]
        ),
        [
            "stopped before it was healthy",
            "Essential container in task exited",
            "container exit code 1",
        ],
    ),
    # the image cannot be pulled: the task never starts, and has no exit code
    (
        TaskScript(
            start=[
                {"lastStatus": "PROVISIONING"},
                {"lastStatus": "STOPPED", "stopCode": "TaskFailedToStart"},
            ],
            stopped_reason="CannotPullContainerError: pull image manifest has been "
            "retried 5 time(s)",
        ),
        ["CannotPullContainerError", "TaskFailedToStart"],
    ),
    # it runs, but its health check fails (a stale heartbeat: the consumer is stuck)
    (
        TaskScript(
            start=[{"lastStatus": "RUNNING"}, {"lastStatus": "RUNNING", "health": "UNHEALTHY"}]
        ),
        ["UNHEALTHY", "python -m tasks.worker.health"],
    ),
    # healthy, but SIGTERM makes it exit non-zero
    (
        TaskScript(stop=[{"lastStatus": "STOPPING"}, {"lastStatus": "STOPPED", "exitCode": 1}]),
        ["exited with code 1 on SIGTERM"],
    ),
    # healthy, but it ignores SIGTERM and is killed at the stop timeout
    (
        TaskScript(stop=[{"lastStatus": "STOPPING"}, {"lastStatus": "STOPPED", "exitCode": 137}]),
        ["exit code 137", f"{STOP_TIMEOUT}s stopTimeout"],
    ),
    # never healthy
    (TaskScript(start=[{"lastStatus": "RUNNING"}]), ["not done after 600s", "RUNNING"]),
]


@pytest.mark.parametrize(
    "script, expected",
    SMOKE_FAILURES,
    ids=["crash", "pull", "unhealthy", "exit1", "killed", "timeout"],
)
def test_a_failed_smoke_task_fails_the_deploy_before_the_api(aws, engine, script, expected):  # noqa: F811
    aws.agent.next_scripts.append(script)
    code, output = run(aws, engine, "deploy")
    assert code != 0
    assert "  FAILED     smoke task" in output, output
    for text in expected:
        assert text in output, (text, output)
    # nothing after the check: no autoscaling, no alarms of ours, no API
    assert "api gateway" not in output
    assert aws.apigateway.get_rest_apis()["items"] == []
    assert (
        aws.application_autoscaling.describe_scalable_targets(ServiceNamespace="ecs")[
            "ScalableTargets"
        ]
        == []
    )
    # and the task is not left running
    arn = aws.ecs.list_tasks(cluster="t1", startedBy=SMOKE_STARTED_BY)["taskArns"][0]
    assert [s["task"] for s in aws.agent.calls("StopTask")][-1] == arn
    assert "fix the image and deploy again" in output


def test_a_failed_smoke_task_puts_the_service_back_on_its_revision(aws, engine, deployed):  # noqa: F811
    (engine.root / "tasks" / "broken.py").write_text("raise ImportError\n")
    aws.agent.next_scripts.append(SMOKE_FAILURES[0][0])
    code, output = run(aws, engine, "deploy")
    assert code != 0
    assert "the service is back on t1-worker:1" in output, output
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    assert service["taskDefinition"].endswith("t1-worker:1")
    # fixed: the next deploy rolls out a new revision and passes
    (engine.root / "tasks" / "broken.py").write_text("FIXED = True\n")
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    assert service["taskDefinition"].endswith("t1-worker:3")


def test_with_tasks_running_the_rollout_is_the_check(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "deploy", "--min-tasks", "1")
    assert code == 0, output
    assert "not needed: 1 task(s) of the new revision passed the rollout" in output
    assert aws.agent.calls("RunTask") == []


def test_the_rollout_is_waited_for_with_a_line_per_poll(aws, engine):  # noqa: F811
    aws.agent.rollout_answers += [
        {"rolloutState": "IN_PROGRESS", "runningCount": 0, "pendingCount": 1},
        {"rolloutState": "IN_PROGRESS", "runningCount": 0, "pendingCount": 1},
        {"rolloutState": "IN_PROGRESS", "runningCount": 1, "pendingCount": 0},
    ]
    code, output = run(aws, engine, "deploy", "--min-tasks", "1")
    assert code == 0, output
    lines = waits(output, "ecs service rollout")
    assert len(lines) == 3, output
    assert "t1-worker:1: 0 of 1 running, 1 pending; 0s of at most 900s" in lines[0]
    assert "10s of at most 900s" in lines[1]
    assert progress(output)["ecs service rollout"] == "checked"
    assert aws.time.sleeps[:3] == [10.0, 10.0, 10.0]


def test_a_rollout_rolled_back_by_the_circuit_breaker_fails_the_deploy(aws, engine):  # noqa: F811
    assert run(aws, engine, "deploy", "--min-tasks", "1")[0] == 0
    first = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0][
        "taskDefinition"
    ]
    old = {
        "id": "ecs-svc/old",
        "status": "ACTIVE",
        "taskDefinition": first,
        "desiredCount": 1,
        "runningCount": 1,
        "pendingCount": 0,
        "rolloutState": "COMPLETED",
    }

    def starting(deployments):
        new = dict(
            deployments[0],
            rolloutState="IN_PROGRESS",
            runningCount=0,
            pendingCount=1,
            failedTasks=2,
        )
        return [new, old]

    def rolled_back(deployments):
        new = dict(
            deployments[0],
            status="ACTIVE",
            rolloutState="FAILED",
            runningCount=0,
            failedTasks=3,
            rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.",
        )
        return [dict(old, status="PRIMARY", id="ecs-svc/rollback"), new]

    aws.agent.rollout_answers += [starting, rolled_back]
    (engine.root / "tasks" / "broken.py").write_text("raise ImportError\n")
    code, output = run(aws, engine, "deploy", "--min-tasks", "1")
    assert code != 0
    assert "  FAILED     ecs service rollout" in output
    assert "2 failed to start" in waits(output, "ecs service rollout")[0]
    assert "circuit breaker: tasks failed to start" in output
    assert "rolled the service back to t1-worker:1" in output
    assert "smoke task" not in output.split("FAILED")[1]
    assert "api gateway" not in output.split("FAILED")[1]


def test_a_rollout_that_never_settles_fails_at_its_deadline(aws, engine):  # noqa: F811
    aws.agent.rollout_answers += [
        {"rolloutState": "IN_PROGRESS", "runningCount": 0, "pendingCount": 1}
    ] * 50
    code, output = run(aws, engine, "deploy", "--min-tasks", "1", "--rollout-timeout", "60")
    assert code != 0
    assert "  FAILED     ecs service rollout" in output
    assert "not done after 60s" in output and "0 of 1 running, 1 pending" in output
    assert aws.apigateway.get_rest_apis()["items"] == []


# ---- the decisions, on ECS's own descriptions


def _deployment(rev: int, **kw) -> dict:
    return {
        "id": f"ecs-svc/{rev}",
        "status": "PRIMARY",
        "taskDefinition": f"{TD}:{rev}",
        "desiredCount": 2,
        "runningCount": 2,
        "pendingCount": 0,
        "rolloutState": "COMPLETED",
        **kw,
    }


@pytest.mark.parametrize(
    "deployments, state, text",
    [
        ([_deployment(2)], "done", "t1-worker:2: 2 of 2 running, 0 pending"),
        (
            [
                _deployment(2, rolloutState="IN_PROGRESS", runningCount=1, pendingCount=1),
                _deployment(1, status="ACTIVE"),
            ],
            "waiting",
            "1 older deployment(s) draining",
        ),
        # COMPLETED is only believed with the old deployment gone and every task running
        ([_deployment(2, runningCount=1)], "waiting", "1 of 2 running"),
        (
            [_deployment(2, rolloutState="FAILED", rolloutStateReason="tasks failed to start")],
            "failed",
            "failed: tasks failed to start",
        ),
        (
            [
                _deployment(1, id="ecs-svc/9"),
                _deployment(2, status="ACTIVE", rolloutState="FAILED"),
            ],
            "failed",
            "rolled the service back to t1-worker:1",
        ),
        ([_deployment(3)], "failed", "no deployment of t1-worker:2"),
        # an emulator without rolloutState: one deployment, all running
        ([{k: v for k, v in _deployment(2).items() if k != "rolloutState"}], "done", ""),
    ],
)
def test_rollout_verdicts(deployments, state, text):
    verdict = rollout_verdict({"deployments": deployments}, f"{TD}:2")
    assert verdict.state == state and text in verdict.text


def _task(last: str, health: str | None = None, exit_code: int | None = None, **kw) -> dict:
    container = {
        "name": "worker",
        **({"healthStatus": health} if health else {}),
        **({"exitCode": exit_code} if exit_code is not None else {}),
    }
    return {
        "lastStatus": last,
        "containers": [container],
        **({"healthStatus": health} if health else {}),
        **kw,
    }


@pytest.mark.parametrize(
    "task, state, text",
    [
        (_task("PROVISIONING"), "waiting", "PROVISIONING, health UNKNOWN"),
        (_task("RUNNING", "UNKNOWN"), "waiting", "RUNNING, health UNKNOWN"),
        (_task("RUNNING", "HEALTHY"), "done", "RUNNING and HEALTHY"),
        (_task("RUNNING", "UNHEALTHY"), "failed", "UNHEALTHY"),
        (
            _task("RUNNING", desiredStatus="STOPPED", stoppedReason="Essential container exited"),
            "waiting",
            "being stopped by ECS: Essential container exited",
        ),
        (
            _task(
                "STOPPED",
                exit_code=3,
                stoppedReason="Essential container in task exited",
                stopCode="EssentialContainerExited",
            ),
            "failed",
            "container exit code 3",
        ),
    ],
)
def test_start_verdicts(task, state, text):
    verdict = start_verdict(task)
    assert verdict.state == state and text in verdict.text


@pytest.mark.parametrize(
    "task, state, text",
    [
        (_task("DEACTIVATING"), "waiting", "after SIGTERM"),
        (_task("STOPPED", exit_code=0), "done", "exited with code 0"),
        (_task("STOPPED", exit_code=143), "failed", "exited with code 143 on SIGTERM"),
        (_task("STOPPED", exit_code=137), "failed", "killed"),
        (
            _task("STOPPED", stoppedReason="Timeout waiting for network interface"),
            "failed",
            "without an exit code: Timeout waiting for network interface",
        ),
    ],
)
def test_stop_verdicts(task, state, text):
    verdict = stop_verdict(task)
    assert verdict.state == state and text in verdict.text


def test_failed_tasks_are_reported_with_their_reasons():
    client = boto3.client(
        "ecs",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )
    stack = Stack("t1", REGION, ACCOUNT)
    arns = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/{n}" for n in ("aaa", "bbb", "ccc")]
    with Stubber(client) as stub:
        stub.add_response(
            "list_tasks",
            {"taskArns": arns},
            {
                "cluster": "t1",
                "serviceName": "worker",
                "desiredStatus": "STOPPED",
                "maxResults": 100,
            },
        )
        stub.add_response(
            "describe_tasks",
            {
                "tasks": [
                    {
                        "taskArn": arns[0],
                        "taskDefinitionArn": f"{TD}:2",
                        "lastStatus": "STOPPED",
                        "stoppedAt": datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
                        "stoppedReason": "Essential container in task exited",
                        "stopCode": "EssentialContainerExited",
                        "containers": [{"name": "worker", "exitCode": 1}],
                    },
                    {
                        "taskArn": arns[1],
                        "taskDefinitionArn": f"{TD}:1",
                        "lastStatus": "STOPPED",
                        "stoppedReason": "Scaling activity initiated by deployment",
                        "containers": [{"name": "worker", "exitCode": 0}],
                    },
                    {
                        "taskArn": arns[2],
                        "taskDefinitionArn": f"{TD}:2",
                        "lastStatus": "STOPPED",
                        "stoppedAt": datetime(2026, 1, 1, 0, 2, tzinfo=UTC),
                        "stoppedReason": "CannotPullContainerError: not found",
                        "stopCode": "TaskFailedToStart",
                        "containers": [{"name": "worker"}],
                    },
                ]
            },
            {"cluster": "t1", "tasks": arns},
        )
        lines = stopped_tasks(client, stack, f"{TD}:2")
    assert lines == [
        "task ccc: CannotPullContainerError: not found; stop code TaskFailedToStart",
        "task aaa: Essential container in task exited; stop code EssentialContainerExited; "
        "container exit code 1",
    ]


def test_an_interrupted_deploy_still_stops_its_smoke_task(aws, engine):  # noqa: F811
    aws.agent.next_scripts.append(TaskScript(start=[{"lastStatus": "RUNNING"}]))
    sleeps = {"n": 0}
    real_sleep = aws.time.sleep

    def interrupted(seconds):  # Ctrl-C while the smoke task starts
        sleeps["n"] += 1
        if sleeps["n"] == 3:
            raise KeyboardInterrupt
        real_sleep(seconds)

    aws.time.sleep = interrupted
    code, output = run(aws, engine, "deploy")
    assert code == 130 and "interrupted" in output
    (ran,) = aws.agent.calls("RunTask")
    (stop,) = aws.agent.calls("StopTask")  # the finally of the smoke step, on Ctrl-C
    arn = aws.ecs.list_tasks(cluster="t1", startedBy=ran["startedBy"])["taskArns"][0]
    assert stop["task"] == arn


def test_destroy_stops_a_smoke_task_left_running(aws, engine, deployed):  # noqa: F811
    # what a deploy killed outright (kill -9, a lost laptop) leaves behind
    aws.agent.next_scripts.append(
        TaskScript(start=[{"lastStatus": "RUNNING", "health": "HEALTHY"}])
    )
    network = aws.agent.calls("RunTask")[0]["networkConfiguration"]
    left = aws.ecs.run_task(
        cluster="t1",
        taskDefinition="t1-worker",
        count=1,
        startedBy=SMOKE_STARTED_BY,
        launchType="FARGATE",
        networkConfiguration=network,
    )["tasks"][0]["taskArn"]
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert f"stopped    smoke task                   {left.rsplit('/', 1)[-1]}" in output
    assert [c["task"] for c in aws.agent.calls("StopTask")][-1] == left
    assert progress(output)["ecs cluster"] == "deleted"
