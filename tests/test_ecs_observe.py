"""`status`, `logs`, `dlq`, `redrive` and the command line itself, against moto."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from ecs import observe
from ecs.cli import build_parser
from ecs.stack import Stack
from tests.conftest import ROOT
from tests.test_ecs_deploy import ACCOUNT, REGION, aws, deployed, engine, run  # noqa: F401

COMMANDS = ["deploy", "plan", "status", "logs", "dlq", "redrive", "destroy"]


def _celery_body(task: str, task_id: str) -> str:
    envelope = {
        "body": base64.b64encode(b"[[], {}, {}]").decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id},
        "properties": {"correlation_id": task_id, "body_encoding": "base64"},
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def test_every_command_has_help_stack_and_region():
    parser = build_parser()
    for command in COMMANDS:
        args = parser.parse_args([command, "--stack", "s2", "--region", "eu-west-1"])
        assert (args.stack, args.region) == ("s2", "eu-west-1")
    out = subprocess.run(
        [sys.executable, "-m", "ecs", "deploy", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--dry-run",
        "--image",
        "--subnets",
        "--acceptable-latency",
        "--seconds-per-job",
        "--enable-exec",
        "--stack",
        "--region",
    ):
        assert flag in out


def test_stack_name_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("JOBS_STACK", "from-env")
    assert build_parser().parse_args(["status"]).stack == "from-env"
    monkeypatch.delenv("JOBS_STACK")
    assert build_parser().parse_args(["status"]).stack == "sqs-jobs"


def test_bad_input_is_a_clear_error(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "plan", "--seconds-per-job", "0")
    assert code == 2 and "--seconds-per-job must be positive" in output
    code, output = run(aws, engine, "plan", "--min-tasks", "5", "--max-tasks", "2")
    assert code == 2 and "--min-tasks" in output
    with pytest.raises(ValueError, match="--since"):
        observe.parse_since("ten minutes")
    assert observe.parse_since("10m") == timedelta(minutes=10)
    with pytest.raises(ValueError, match="stack name"):
        Stack("bad name!", REGION, ACCOUNT)


def test_status_of_a_stack_not_deployed(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "status")
    assert code == 0
    assert "service:   not deployed" in output and "queue:     not deployed" in output


def test_status_shows_service_queues_and_recent_jobs(aws, engine, deployed):  # noqa: F811
    url = aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"]
    for _ in range(3):
        aws.sqs.send_message(QueueUrl=url, MessageBody="x")
    aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    from tasks.results.encoding import utc_now

    # Job records as tasks.results.records writes them: in the listing index (list_pk).
    for n, (state, created) in enumerate(
        [
            ("SUCCESS", "2026-01-01T00:00:00.000Z"),
            ("FAILURE", "2026-01-02T00:00:00.000Z"),
            ("FAILURE", utc_now()),
        ]
    ):
        aws.dynamodb.put_item(
            TableName="t1-jobs",
            Item={
                "job_id": {"S": f"job-{n}"},
                "status": {"S": state},
                "list_pk": {"S": f"{state}#0"},
                "task": {"S": "tasks.debug.add"},
                "created_at": {"S": created},
                "updated_at": {"S": created},
                "finished_at": {"S": created},
            },
        )
    aws.dynamodb.put_item(TableName="t1-jobs", Item={"job_id": {"S": "once:abc"}})
    code, output = run(aws, engine, "status")
    assert code == 0, output
    assert "service:   desired 0, running 0, pending 0" in output
    assert "t1-worker:1" in output
    assert "queue:     2 visible, 1 in flight, 0 in the dead-letter queue" in output
    assert "oldest:    n/a" in output
    lines = output.splitlines()
    jobs = [line.split()[:2] for line in lines if line.startswith("  job-")]
    assert jobs == [
        ["job-2", "FAILURE"],
        ["job-1", "FAILURE"],
        ["job-0", "SUCCESS"],  # newest
        ["job-2", "tasks.debug.add"],
    ]  # then the failures of the last 24 h
    assert "failed:    1 job(s) in the last 24 h" in output


def test_oldest_message_age_from_cloudwatch(aws):  # noqa: F811
    aws.cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Value": 42.0,
                "Dimensions": [{"Name": "QueueName", "Value": "t1-jobs"}],
            }
        ],
    )
    assert observe.oldest_age(aws.cloudwatch, "t1-jobs") == "42s"


def test_logs_prints_and_follows_worker_logs(aws, engine, deployed):  # noqa: F811
    now = int(time.time() * 1000)
    aws.logs.create_log_stream(logGroupName="/ecs/t1", logStreamName="worker/worker/abc123")
    aws.logs.put_log_events(
        logGroupName="/ecs/t1",
        logStreamName="worker/worker/abc123",
        logEvents=[
            {"timestamp": now - 5000, "message": "celery ready."},
            {"timestamp": now - 4000, "message": "Task succeeded"},
        ],
    )
    code, output = run(aws, engine, "logs", "--since", "10m")
    assert code == 0
    assert output.splitlines()[0].endswith("abc123 celery ready.")
    assert "Task succeeded" in output

    lines: list[str] = []

    def more(seconds: float) -> None:  # a new line arrives during the first wait
        if "late line" in " ".join(lines):
            return
        aws.logs.put_log_events(
            logGroupName="/ecs/t1",
            logStreamName="worker/worker/abc123",
            logEvents=[{"timestamp": now, "message": "late line"}],
        )

    stack = Stack("t1", REGION, ACCOUNT)
    printed = observe.logs(
        aws,
        stack,
        since=timedelta(minutes=10),
        follow=True,
        echo=lines.append,
        max_polls=3,
        sleep=more,
    )
    assert printed == 3  # each line once, however many polls saw it
    assert [line.split(" ", 2)[2] for line in lines] == [
        "celery ready.",
        "Task succeeded",
        "late line",
    ]


def test_dlq_and_redrive(aws, engine, deployed):  # noqa: F811
    dlq = aws.sqs.get_queue_url(QueueName="t1-jobs-dlq")["QueueUrl"]
    aws.sqs.send_message(QueueUrl=dlq, MessageBody=_celery_body("tasks.debug.fail", "id-1"))
    aws.dynamodb.put_item(
        TableName="t1-jobs", Item={"job_id": {"S": "id-1"}, "status": {"S": "FAILURE"}}
    )
    code, output = run(aws, engine, "dlq")
    assert code == 0
    assert "id-1" in output and "tasks.debug.fail" in output and "1 message(s)" in output
    code, output = run(aws, engine, "redrive")
    assert code == 0 and "moved 1 message(s) back to t1-jobs" in output
    url = aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"]
    moved = aws.sqs.receive_message(QueueUrl=url)["Messages"]
    assert moved[0]["Body"] == _celery_body("tasks.debug.fail", "id-1")
    assert "Item" not in aws.dynamodb.get_item(TableName="t1-jobs", Key={"job_id": {"S": "id-1"}})
    assert "the dead-letter queue is empty" in run(aws, engine, "dlq")[1]


def test_dlq_of_a_stack_not_deployed(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "dlq")
    assert code == 1 and "deploy it first" in output


def test_status_shows_alarms_tasks_and_recent_failures(aws, engine, deployed):  # noqa: F811
    aws.cloudwatch.set_alarm_state(
        AlarmName="t1-dead-letters",
        StateValue="ALARM",
        StateReason="Threshold Crossed: 1 datapoint [2.0]",
    )
    aws.cloudwatch.set_alarm_state(
        AlarmName="t1-oldest-message-age", StateValue="OK", StateReason="ok"
    )
    # a worker task that crashed (what ECS keeps of it for an hour)
    from tests.test_ecs_deploy import TaskScript

    aws.agent.next_scripts.append(
        TaskScript(
            stop=[{"lastStatus": "STOPPED", "exitCode": 1}],
            stopped_reason="Essential container in task exited",
        )
    )
    network = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0][
        "networkConfiguration"
    ]
    arn = aws.ecs.run_task(
        cluster="t1", taskDefinition="t1-worker", launchType="FARGATE", networkConfiguration=network
    )["tasks"][0]["taskArn"]
    aws.ecs.stop_task(cluster="t1", task=arn)  # moto's way to a STOPPED task
    code, output = run(aws, engine, "status")
    assert code == 0, output
    lines = output.splitlines()
    assert "alarms:" in lines
    assert "  ALARM             t1-dead-letters  (Threshold Crossed: 1 datapoint [2.0])" in lines
    assert "  OK                t1-oldest-message-age" in lines
    assert any(line.endswith("t1-queue-waiting-no-workers") for line in lines)
    assert "failures:  1 stopped task(s) in the last hour" in lines
    (failure,) = [line for line in lines if arn.rsplit("/", 1)[-1][:12] in line]
    assert "t1-worker:1: Essential container in task exited" in failure
    assert "container exit code 1" in failure
    # the smoke task of the deploy stopped cleanly: not a failure
    assert sum("exit code 0" in line for line in lines) == 0


def test_status_of_alarms_not_deployed(aws, engine):  # noqa: F811
    code, output = run(aws, engine, "status")
    assert code == 0
    assert "  not deployed      t1-dead-letters" in output


def test_alarm_threshold_and_topic_are_options(aws, engine, deployed):  # noqa: F811
    from tests.test_ecs_deploy import progress

    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:ops"
    code, output = run(aws, engine, "plan", "--max-message-age", "120", "--alarm-topic", topic)
    assert code == 0
    lines = [line for line in output.splitlines() if "cloudwatch alarm" in line]
    assert any(
        "update" in line and "t1-oldest-message-age" in line and "120s" in line for line in lines
    ), output
    assert any("update" in line and "t1-dead-letters" in line for line in lines)
    code, output = run(aws, engine, "deploy", "--max-message-age", "120", "--alarm-topic", topic)
    assert code == 0, output
    alarm = aws.cloudwatch.describe_alarms(AlarmNames=["t1-oldest-message-age"])["MetricAlarms"][0]
    assert alarm["Threshold"] == 120.0
    assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    again = progress(
        run(aws, engine, "deploy", "--max-message-age", "120", "--alarm-topic", topic)[1]
    )
    assert again["cloudwatch alarm"] == "unchanged"
    code, output = run(aws, engine, "plan", "--max-message-age", "0")
    assert code == 2 and "--max-message-age" in output
