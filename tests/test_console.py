"""The operator's console (console/) with moto in process: its views, JSON and actions.

What each number means is docs/console.md's; SQS's attributes are the SQS API reference's
(ApproximateNumberOfMessages: visible, ...NotVisible: in flight, ...Delayed: delayed).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber
from celery import states

from console.app import create_app
from console.sources import AwsSource, Names, Source
from tasks.ops.provision import ensure_queues, ensure_table

PRIVATE = "the card number 4111 is in this message"


@pytest.fixture
def aws(in_process_aws):
    from tasks.ops.clients import dynamodb_client, sqs_client
    from tasks.ops.settings import Settings

    settings = Settings.from_env()
    sqs, dynamodb = sqs_client(settings), dynamodb_client(settings)
    queues = ensure_queues(sqs, "console-jobs", "console-jobs-dlq")
    ensure_table(dynamodb, "console-jobs")
    return sqs, dynamodb, queues


@pytest.fixture
def source(aws) -> Source:
    sqs, dynamodb, _ = aws
    return Source(
        Names("console-jobs", "console-jobs-dlq", "console-jobs"),
        lambda: sqs,
        lambda: dynamodb,
        3600,
    )


@pytest.fixture
def client(source):
    app = create_app(source)
    app.testing = True
    return app.test_client()


def new_job(source: Source, *states_: str, task: str = "tasks.debug.add", **kw) -> str:
    job_id = str(uuid.uuid4())
    records = source.records()
    for state in states_:
        assert records.transition(job_id, state, facts={"task": task}, **kw)
    return job_id


def token_of(html: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', html)[1]


def test_now_counts_the_queue_and_turns_red_for_dead_letters_and_failures(aws, source, client):
    sqs, _, queues = aws
    view = client.get("/console/api/now").get_json()
    assert view["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert view["dlq"] == 0 and view["failures_last_hour"] == 0 and view["attention"] == []
    assert view["oldest_age"] is None  # nothing measures it locally: "n/a", not a guess
    page = client.get("/console/").get_data(as_text=True)
    assert 'id="box-dlq" class=""' in page and "n/a" in page

    for _ in range(2):
        sqs.send_message(QueueUrl=queues.queue_url, MessageBody="{}")
    sqs.send_message(QueueUrl=queues.queue_url, MessageBody="{}", DelaySeconds=600)
    sqs.receive_message(QueueUrl=queues.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    sqs.send_message(QueueUrl=queues.dlq_url, MessageBody="{}")
    new_job(source, states.STARTED, states.FAILURE)

    view = client.get("/console/api/now").get_json()
    assert view["queue"] == {"visible": 1, "in_flight": 1, "delayed": 1}
    assert view["dlq"] == 1 and view["failures_last_hour"] == 1
    assert view["attention"] == [
        "1 message(s) in the dead-letter queue",
        "1 failed job(s) in the last hour",
    ]
    page = client.get("/console/").get_data(as_text=True)
    assert 'id="box-dlq" class="bad"' in page and 'id="box-failures" class="bad"' in page


def test_chart_counts_finished_jobs_per_minute_by_status(source, client):
    for _ in range(2):
        new_job(source, states.STARTED, states.SUCCESS)
    new_job(source, states.STARTED, states.FAILURE)
    new_job(source, states.STARTED)  # running: not finished, not charted
    chart = client.get("/console/api/chart").get_json()
    assert len(chart["minutes"]) == 60
    # Just finished: in the newest minutes (the last, or the one before if it just turned).
    assert sum(chart["series"]["SUCCESS"][-2:]) == 2
    assert chart["total"] == 3 and not chart["capped"]
    assert sum(chart["series"]["SUCCESS"]) == 2 and sum(chart["series"]["FAILURE"]) == 1
    assert sum(chart["series"]["REVOKED"]) == 0
    # The page holds the canvas and the vendored library, no build step.
    page = client.get("/console/").get_data(as_text=True)
    assert 'id="finished-chart"' in page and "vendor/chartjs/chart.umd.min.js" in page
    assert client.get("/console/static/vendor/chartjs/chart.umd.min.js").status_code == 200


def test_jobs_are_listed_by_status_newest_first_with_paging(source, client):
    ids = [new_job(source, states.STARTED, states.FAILURE) for _ in range(27)]
    answer = client.get("/console/jobs?status=FAILURE")
    assert answer.status_code == 200
    first = answer.get_data(as_text=True)
    shown = re.findall(r'<tr data-id="([^"]+)" class="bad">', first)
    assert len(shown) == 25
    cursor = re.search(r'id="next-page" href="[^"]*cursor=([^"&]+)', first)[1]
    second = client.get(f"/console/jobs?status=FAILURE&cursor={cursor}").get_data(as_text=True)
    rest = re.findall(r'<tr data-id="([^"]+)"', second)
    assert sorted(shown + rest) == sorted(ids) and 'id="next-page"' not in second
    assert client.get("/console/jobs?status=NOPE").status_code == 400
    assert client.get("/console/jobs?status=FAILURE&cursor=forged").status_code == 400


def test_a_failed_jobs_page_is_its_public_record_as_a_timeline(source, client):
    error = {
        "type": "RuntimeError",
        "module": "builtins",
        "message": "",
        "args": json.dumps([PRIVATE]),
    }
    job_id = new_job(source, states.STARTED)
    source.records().transition(
        job_id, states.FAILURE, error=error, facts={"task": "tasks.debug.fail"}
    )
    page = client.get(f"/console/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-status" class="bad">FAILURE' in page
    assert re.search(r'id="job-error" class="bad">RuntimeError\s*</p>', page)
    events = re.findall(r"<b>([^<]+)</b>", page.split('id="timeline"')[1].split("</ol>")[0])
    assert events == ["recorded", "started", "finished FAILURE"]
    assert PRIVATE not in page and "4111" not in page  # args are never shown over HTTP
    assert 'id="cancel"' not in page  # a finished job cannot be cancelled
    assert client.get("/console/jobs/not-a-job").status_code == 400


def test_cancel_is_confirmed_csrf_safe_and_says_what_it_did(source, client, caplog):
    job_id = new_job(source, states.STARTED)
    confirm = client.get(f"/console/jobs/{job_id}/cancel?terminate=1").get_data(as_text=True)
    assert "Yes, cancel and terminate" in confirm
    token = token_of(confirm)
    url = f"/console/jobs/{job_id}/cancel"

    assert client.post(url, data={"terminate": "1"}).status_code == 403  # no token
    stranger = create_app(source).test_client()  # the token, but not the cookie
    assert stranger.post(url, data={"token": token, "terminate": "1"}).status_code == 403
    evil = client.post(
        url, data={"token": token, "terminate": "1"}, headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert source.job(job_id)["status"] == states.STARTED

    with caplog.at_level(logging.INFO, logger="console.actions"):
        done = client.post(
            url, data={"token": token, "terminate": "1"}, headers={"Origin": "http://localhost"}
        )
    said = done.get_data(as_text=True)
    assert done.status_code == 200
    assert f"job {job_id} revoked (was STARTED); its worker sends it SIGTERM" in said
    assert source.job(job_id)["status"] == states.REVOKED
    assert source.records().read(job_id, "terminate")["terminate"]["S"] == "SIGTERM"
    assert any(f"cancel job={job_id} terminate=True" in r.getMessage() for r in caplog.records)

    finished = new_job(source, states.STARTED, states.SUCCESS)
    again = client.post(f"/console/jobs/{finished}/cancel", data={"token": token})
    assert f"job {finished} not revoked: already SUCCESS" in again.get_data(as_text=True)


def test_redrive_moves_dead_letters_back_and_says_how_many(aws, source, client, caplog):
    sqs, _, queues = aws
    for _ in range(2):
        sqs.send_message(QueueUrl=queues.dlq_url, MessageBody="not a celery message")
    listed = client.get("/console/dlq").get_data(as_text=True)
    assert listed.count("(unreadable)") == 2
    confirm = client.get("/console/dlq/redrive").get_data(as_text=True)
    assert "2 message(s) are in it" in confirm
    assert client.post("/console/dlq/redrive").status_code == 403
    with caplog.at_level(logging.INFO, logger="console.actions"):
        done = client.post("/console/dlq/redrive", data={"token": token_of(confirm)})
    assert "moved 2 message(s) from console-jobs-dlq back to console-jobs" in done.get_data(
        as_text=True
    )
    assert source.queue_counts("console-jobs-dlq")["visible"] == 0
    assert source.queue_counts("console-jobs")["visible"] == 2
    assert any("console action redrive" in r.getMessage() for r in caplog.records)


def test_aws_source_adds_service_alarms_and_the_oldest_message(aws, source):
    """ECS DescribeServices and CloudWatch DescribeAlarms from moto; the SQS metric (which
    moto does not compute) from a Stubber answering GetMetricStatistics."""
    import boto3

    ecs = boto3.client("ecs", region_name="us-east-1")
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    ecs.create_cluster(clusterName="stack")
    ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "worker", "image": "x", "memory": 512}]
    )
    ecs.create_service(
        cluster="stack", serviceName="worker", taskDefinition="worker", desiredCount=2
    )
    cloudwatch.put_metric_alarm(
        AlarmName="stack-dead-letters",
        MetricName="ApproximateNumberOfMessagesVisible",
        Namespace="AWS/SQS",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(
        AlarmName="stack-dead-letters", StateValue="ALARM", StateReason="1 dead letter"
    )
    metrics = boto3.client("cloudwatch", region_name="us-east-1")
    stub = Stubber(metrics)
    stub.add_response(
        "get_metric_statistics",
        {"Datapoints": [{"Timestamp": datetime(2026, 1, 1, tzinfo=UTC), "Maximum": 42.0}]},
    )
    names = Names(
        "console-jobs",
        "console-jobs-dlq",
        "console-jobs",
        cluster="stack",
        service="worker",
        alarms=("stack-dead-letters", "stack-other"),
    )

    class CloudWatch:  # DescribeAlarms from moto, GetMetricStatistics from the Stubber
        def __getattr__(self, name: str):
            return getattr(metrics if name == "get_metric_statistics" else cloudwatch, name)

    aws_source = AwsSource(
        names,
        source.sqs,
        source.dynamodb,
        ecs=lambda: ecs,
        cloudwatch=CloudWatch,
    )
    with stub:
        view = aws_source.now()
    assert view["kind"] == "aws" and view["oldest_age"] == 42
    assert view["service"]["desired"] == 2 and view["service"]["running"] <= 2
    assert view["alarms"] == [
        {"name": "stack-dead-letters", "state": "ALARM", "reason": "1 dead letter"},
        {"name": "stack-other", "state": "not deployed", "reason": ""},
    ]
    assert "alarm: stack-dead-letters" in view["attention"]


def celery_body(task: str, job_id: str, **headers) -> str:
    """A kombu SQS body of Celery's message protocol 2 (headers carry task, id, retries, eta,
    argsrepr); base64 JSON as kombu's SQS transport writes it."""
    import base64

    envelope = {
        "body": base64.b64encode(json.dumps([[PRIVATE], {}, {}]).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": job_id, "argsrepr": repr([PRIVATE])}
        | headers,
        "properties": {"correlation_id": job_id, "body_encoding": "base64"},
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def test_jobs_filter_by_task_and_since(source, client):
    adds = [new_job(source, states.STARTED, states.SUCCESS) for _ in range(2)]
    other = new_job(source, states.STARTED, states.SUCCESS, task="tasks.debug.sleep")
    page = client.get("/console/jobs?status=SUCCESS&task=tasks.debug.add").get_data(as_text=True)
    assert sorted(re.findall(r'<tr data-id="([^"]+)"', page)) == sorted(adds)
    assert other not in page
    # The status links and the form keep the filter.
    assert "status=FAILURE&amp;task=tasks.debug.add" in page
    assert 'name="task" value="tasks.debug.add"' in page
    later = client.get("/console/jobs?status=SUCCESS&since=2999-01-01").get_data(as_text=True)
    assert re.findall(r'<tr data-id="([^"]+)"', later) == []
    earlier = client.get("/console/jobs?status=SUCCESS&since=2000-01-01").get_data(as_text=True)
    assert len(re.findall(r'<tr data-id="([^"]+)"', earlier)) == 3
    assert client.get("/console/jobs?status=SUCCESS&since=yesterday").status_code == 400
    assert client.get("/console/jobs?status=SUCCESS&task=a%20b").status_code == 400


def test_statuses_are_the_listings_own(source, client, monkeypatch):
    """A status the listing adds is offered without a change here."""
    from tasks.results import listing

    assert "SCHEDULED" in listing.LISTED_STATES
    monkeypatch.setattr(listing, "LISTED_STATES", (*listing.LISTED_STATES, "LATER"))
    page = client.get("/console/jobs?status=SCHEDULED")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert ">SCHEDULED</a>" in text and ">LATER</a>" in text


def test_percentiles_are_nearest_rank():
    from console.sources import percentiles

    assert percentiles([]) == {"p50": None, "p95": None}
    assert percentiles([float(v) for v in range(20, 0, -1)]) == {"p50": 10.0, "p95": 19.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0}


def test_metrics_from_the_records_and_the_depths_seen(aws, source, client):
    sqs, _, queues = aws
    for _ in range(3):
        new_job(source, states.STARTED, states.SUCCESS)
    new_job(source, states.STARTED, states.FAILURE, task="tasks.debug.fail")
    sqs.send_message(QueueUrl=queues.queue_url, MessageBody="{}")
    client.get("/console/api/now")  # a sample of the depth: the emulator keeps none
    data = client.get("/console/api/metrics?range=hour").get_json()
    assert data["source"] == "records" and len(data["depth"]["labels"]) == 60
    assert data["depth"]["values"][-1] == 1 or data["depth"]["values"][-2] == 1
    durations = data["durations"]
    assert durations["labels"] == ["tasks.debug.add SUCCESS", "tasks.debug.fail FAILURE"]
    for name, values in durations["series"].items():
        assert all(v is not None and 0 <= v < 60 for v in values), name
    day = client.get("/console/api/metrics?range=day").get_json()
    assert len(day["depth"]["labels"]) == 96  # 15-minute steps
    chart = client.get("/console/api/chart?range=day").get_json()
    assert len(chart["minutes"]) == 96 and chart["total"] == 4
    assert client.get("/console/api/metrics?range=week").status_code == 400
    page = client.get("/console/").get_data(as_text=True)
    assert 'id="depth-chart"' in page and 'id="durations-chart"' in page
    assert 'data-range="day"' in page


def test_a_dead_letter_shows_its_headers_and_reason_and_redrives_alone(aws, source, client, caplog):
    sqs, _, queues = aws
    dead = new_job(source, states.STARTED)
    error = {"type": "TimeLimitExceeded", "module": "celery.exceptions", "message": "60 s"}
    source.records().transition(dead, states.FAILURE, error=error)
    sqs.send_message(
        QueueUrl=queues.dlq_url,
        MessageBody=celery_body("tasks.debug.add", dead, retries=2, eta="2026-12-06T18:00:00Z"),
    )
    sqs.send_message(QueueUrl=queues.dlq_url, MessageBody="not a celery message")
    letters = {letter.task_id: letter for letter in source.dead_letters()}
    message_id = letters[dead].message_id

    page = client.get(f"/console/dlq/{message_id}").get_data(as_text=True)
    headers = dict(re.findall(r"<tr><th>(\w+)</th><td>([^<]*)</td></tr>", page))
    assert headers == {
        "task": "tasks.debug.add",
        "id": dead,
        "retries": "2",
        "eta": "2026-12-06T18:00:00Z",
    }
    assert 'id="letter-reason" class="bad">TimeLimitExceeded: 60 s' in page
    assert PRIVATE not in page and "4111" not in page  # argsrepr is never shown
    assert client.get("/console/dlq/no-such-message").status_code == 404

    confirm = client.get(f"/console/dlq/{message_id}/redrive").get_data(as_text=True)
    assert f"job <code>{dead}</code>" in confirm
    url = f"/console/dlq/{message_id}/redrive"
    assert client.post(url).status_code == 403
    with caplog.at_level(logging.INFO, logger="console.actions"):
        done = client.post(url, data={"token": token_of(confirm)}).get_data(as_text=True)
    assert f"moved message {message_id} (job {dead})" in done
    assert "its FAILURE record was reset" in done
    assert source.records().read(dead) == {}  # PENDING: the redriven message can run
    # The other letter stayed, visible at once (not hidden for the search's timeout).
    assert source.queue_counts("console-jobs-dlq") == {"visible": 1, "in_flight": 0, "delayed": 0}
    assert source.queue_counts("console-jobs")["visible"] == 1
    assert any(f"redrive message={message_id}" in r.getMessage() for r in caplog.records)
    again = client.post(url, data={"token": token_of(confirm)}).get_data(as_text=True)
    assert "is not in console-jobs-dlq" in again


def test_a_large_result_is_a_link_where_get_jobs_shows_one(source, client):
    job_id = new_job(source, states.STARTED)
    key = f"results/{job_id}/r.json"
    ref = {
        "M": {
            "bucket": {"S": "b"},
            "key": {"S": key},
            "size": {"N": "500000"},
            "sha256": {"S": "0" * 64},
        }
    }
    assert source.records().transition(job_id, states.SUCCESS, result_ref=ref)
    page = client.get(f"/console/jobs/{job_id}").get_data(as_text=True)
    assert f'<a href="/jobs/{job_id}/result">GET /jobs/{job_id}/result</a>' in page
    assert "500000 bytes" in page and key not in page  # no S3 key


def test_a_deployment_in_progress_is_shown(source):
    """ECS DescribeServices (its documented shape) with a second deployment: the new task
    definition rolling out while the old one drains."""
    import boto3

    ecs = boto3.client("ecs", region_name="us-east-1")
    stub = Stubber(ecs)

    def deployment(status: str, definition: str, rollout: str, running: int, failed: int = 0):
        return {
            "id": f"ecs-svc/{definition}",
            "status": status,
            "taskDefinition": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{definition}",
            "desiredCount": 2,
            "runningCount": running,
            "failedTasks": failed,
            "rolloutState": rollout,
        }

    service = {
        "serviceName": "worker",
        "status": "ACTIVE",
        "desiredCount": 2,
        "runningCount": 3,
        "pendingCount": 1,
        "deployments": [
            deployment("PRIMARY", "worker:8", "IN_PROGRESS", 1, failed=1),
            deployment("ACTIVE", "worker:7", "COMPLETED", 2),
        ],
    }
    for _ in range(2):
        stub.add_response("describe_services", {"services": [service], "failures": []})
    names = Names("console-jobs", "console-jobs-dlq", "console-jobs", "stack", "worker")
    aws_source = AwsSource(names, source.sqs, source.dynamodb, ecs=lambda: ecs)
    app = create_app(aws_source)
    with stub:
        view = app.test_client().get("/console/api/now").get_json()
        page = app.test_client().get("/console/").get_data(as_text=True)
    assert [d["task_definition"] for d in view["service"]["deploying"]] == [
        "worker:8",
        "worker:7",
    ]
    assert "deployment of worker:8: IN_PROGRESS, 1 failed task(s)" in view["attention"]
    assert (
        '<p class="deployment bad">deployment PRIMARY of worker:8: IN_PROGRESS, running 1 of 2, '
        "1 failed task(s)</p>" in page
    )
    assert "deployment ACTIVE of worker:7: COMPLETED, running 2 of 2" in page


def test_aws_metrics_are_cloudwatchs_get_metric_data(source):
    """ListMetrics finds the worker's EMF series (namespace, [Task, Outcome]:
    tasks/worker/metrics.py); GetMetricData reads SQS's depth per step and each series'
    QueueWait and JobDuration p50/p95 over the range. moto does not compute EMF metrics
    from logs, so a Stubber answers in the shapes of the CloudWatch API reference, checking
    the request, including a second page (NextToken)."""
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    stub = Stubber(cloudwatch)
    dims = [{"Name": "Task", "Value": "tasks.debug.add"}, {"Name": "Outcome", "Value": "SUCCESS"}]
    for metric in ("JobDuration", "QueueWait"):
        stub.add_response(
            "list_metrics",
            {"Metrics": [{"Namespace": "ns", "MetricName": metric, "Dimensions": dims}]},
            {"Namespace": "ns", "MetricName": metric},
        )
    when = datetime(2026, 12, 6, 17, 30, 20, tzinfo=UTC)
    end = datetime(2026, 12, 6, 17, 31, tzinfo=UTC)

    def query(query_id, namespace, name, dimensions, period, stat):
        metric = {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions}
        return {
            "Id": query_id,
            "MetricStat": {"Metric": metric, "Period": period, "Stat": stat},
            "ReturnData": True,
        }

    queries = [
        query(
            "depth",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            [{"Name": "QueueName", "Value": "console-jobs"}],
            60,
            "Maximum",
        ),
        query("w0_p50", "ns", "QueueWait", dims, 3600, "p50"),
        query("w0_p95", "ns", "QueueWait", dims, 3600, "p95"),
        query("r0_p50", "ns", "JobDuration", dims, 3600, "p50"),
        query("r0_p95", "ns", "JobDuration", dims, 3600, "p95"),
    ]
    request = {
        "MetricDataQueries": queries,
        "StartTime": end - timedelta(hours=1),
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }

    def result(query_id, times, values):
        return {"Id": query_id, "Timestamps": times, "Values": values, "StatusCode": "Complete"}

    stub.add_response(
        "get_metric_data",
        {
            "MetricDataResults": [
                result("depth", [datetime(2026, 12, 6, 17, 29, tzinfo=UTC)], [4.0]),
                result("w0_p50", [end - timedelta(hours=1)], [0.25]),
                result("w0_p95", [end - timedelta(hours=1)], [1.5]),
            ],
            "NextToken": "page-2",
        },
        request,
    )
    stub.add_response(
        "get_metric_data",
        {
            "MetricDataResults": [
                result("depth", [datetime(2026, 12, 6, 17, 30, tzinfo=UTC)], [7.0]),
                result("r0_p50", [end - timedelta(hours=1)], [2.0]),
                result("r0_p95", [end - timedelta(hours=1)], [9.75]),
            ]
        },
        request | {"NextToken": "page-2"},
    )
    names = Names("console-jobs", "console-jobs-dlq", "console-jobs")
    aws_source = AwsSource(
        names, source.sqs, source.dynamodb, cloudwatch=lambda: cloudwatch, metrics_namespace="ns"
    )
    with stub:
        data = aws_source.metrics(when, "hour")
    stub.assert_no_pending_responses()
    assert data["source"] == "cloudwatch"
    assert data["depth"]["values"][-2:] == [4.0, 7.0] and data["depth"]["labels"][-1] == "17:30"
    assert data["durations"] == {
        "labels": ["tasks.debug.add SUCCESS"],
        "series": {
            "submit-to-start p50": [0.25],
            "submit-to-start p95": [1.5],
            "run p50": [2.0],
            "run p95": [9.75],
        },
    }


def test_a_deferred_job_shows_when_it_will_run():
    """SCHEDULED (a job deferred until its eta): an event, with the eta where the record
    shows one."""
    from console.timeline import timeline

    job = {
        "job_id": str(uuid.uuid4()),
        "status": "SCHEDULED",
        "created_at": "2026-12-06T17:00:00.000Z",
        "updated_at": "2026-12-06T17:00:00.500Z",
        "eta": "2026-12-07T09:00:00Z",
    }
    events = [(e.what, e.detail) for e in timeline(job)]
    assert events == [
        ("recorded", "the record's first write"),
        ("scheduled", "for 2026-12-07T09:00:00Z"),
    ]


@pytest.fixture
def deferring(aws):
    """A source whose jobs can be deferred: its Settings name a schedule group (made here)
    and a scheduler role, as tasks.worker.deferral needs."""
    from dataclasses import replace

    from tasks.ops import one_time_schedules
    from tasks.ops.clients import scheduler_client
    from tasks.ops.settings import Settings

    sqs, dynamodb, _ = aws
    settings = replace(
        Settings.from_env(),
        queue_name="console-jobs",
        dlq_name="console-jobs-dlq",
        table_name="console-jobs",
        schedule_group="console-schedules",
        scheduler_role_arn="arn:aws:iam::123456789012:role/console-scheduler",
    )
    scheduler = scheduler_client(settings)
    one_time_schedules.ensure_group(settings, scheduler=scheduler)
    source = Source(
        Names("console-jobs", "console-jobs-dlq", "console-jobs"),
        lambda: sqs,
        lambda: dynamodb,
        3600,
        settings=settings,
        scheduler=lambda: scheduler,
    )
    return source, settings, scheduler


def defer(source: Source, settings, scheduler, eta: datetime, *, schedule: bool = True) -> str:
    """A job as tasks.worker.deferral leaves it: its one-time schedule, its SCHEDULED record."""
    from tasks.ops import one_time_schedules

    job_id = str(uuid.uuid4())
    name = one_time_schedules.schedule_name(job_id)
    if schedule:
        assert one_time_schedules.create(
            settings, name=name, at=eta, body="{}", scheduler=scheduler
        )
    eta_text = eta.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert source.records().mark_scheduled(
        job_id, task="tasks.debug.add", eta=eta_text, schedule=name
    )
    return job_id


def test_a_scheduled_job_is_listed_with_its_eta_and_shown_as_waiting_for_it(deferring):
    source, settings, scheduler = deferring
    client = create_app(source).test_client()
    eta = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    job_id = defer(source, settings, scheduler, eta)
    eta_text = eta.strftime("%Y-%m-%dT%H:%M:%SZ")

    page = client.get("/console/jobs?status=SCHEDULED").get_data(as_text=True)
    assert "runs at (eta)" in page
    row = page.split(f'<tr data-id="{job_id}"')[1].split("</tr>")[0]
    assert f'<td class="eta">{eta_text}</td>' in row
    # Other statuses keep their finished column.
    assert "runs at (eta)" not in client.get("/console/jobs?status=SUCCESS").get_data(as_text=True)

    page = client.get(f"/console/jobs/{job_id}").get_data(as_text=True)
    timeline = page.split('id="timeline"')[1].split("</ol>")[0]
    assert re.search(rf"<b>scheduled</b> for {eta_text}", timeline), timeline
    assert 'id="cancel"' in page  # not finished: it can be cancelled
    confirm = client.get(f"/console/jobs/{job_id}/cancel").get_data(as_text=True)
    assert "the schedule is deleted too" in confirm and eta_text in confirm


def test_cancel_deletes_a_scheduled_jobs_schedule_and_says_so(deferring, caplog):
    from tasks.ops import one_time_schedules

    source, settings, scheduler = deferring
    client = create_app(source).test_client()
    eta = datetime.now(UTC) + timedelta(hours=3)
    waiting = defer(source, settings, scheduler, eta)
    fired = defer(source, settings, scheduler, eta, schedule=False)  # fired and deleted itself
    name = one_time_schedules.schedule_name(waiting)
    scheduler.get_schedule(GroupName="console-schedules", Name=name)  # there before

    token = token_of(client.get(f"/console/jobs/{waiting}/cancel").get_data(as_text=True))
    with caplog.at_level(logging.INFO, logger="console.actions"):
        said = client.post(f"/console/jobs/{waiting}/cancel", data={"token": token})
    assert said.status_code == 200
    assert f"job {waiting} revoked (was SCHEDULED); its schedule {name} deleted" in said.get_data(
        as_text=True
    )
    # EventBridge Scheduler's GetSchedule: ResourceNotFoundException once deleted.
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(GroupName="console-schedules", Name=name)
    assert source.job(waiting)["status"] == states.REVOKED
    assert any(f"its schedule {name} deleted" in r.getMessage() for r in caplog.records)

    said = client.post(f"/console/jobs/{fired}/cancel", data={"token": token})
    text = said.get_data(as_text=True)
    assert f"its schedule {one_time_schedules.schedule_name(fired)} had fired already" in text
    assert source.job(fired)["status"] == states.REVOKED


def test_cancel_says_when_the_schedule_could_not_be_deleted(deferring):
    """The revoke stands (REVOKED, so a fired schedule runs nothing); the page says the
    schedule was left and why, as tasks.results.control's revoke logs it."""
    source, settings, scheduler = deferring
    job_id = defer(source, settings, scheduler, datetime.now(UTC) + timedelta(hours=3))
    stub = Stubber(scheduler)
    stub.add_client_error("delete_schedule", "AccessDeniedException", "not allowed")
    with stub:
        outcome = source.cancel(job_id, terminate=False)
    assert outcome.revocation.revoked and outcome.revocation.previous == "SCHEDULED"
    assert "was not deleted" in str(outcome) and "AccessDeniedException" in str(outcome)
    assert "the worker drops the job" in str(outcome)


def test_an_unknown_job_is_a_404_that_still_offers_the_cancel(source, client):
    unknown = str(uuid.uuid4())
    answer = client.get(f"/console/jobs/{unknown}")
    assert answer.status_code == 404
    page = answer.get_data(as_text=True)
    assert "no record of this job" in page and 'id="cancel"' in page  # queued: cancellable


def test_the_emulator_down_is_said_plainly(aws):
    """An endpoint that does not answer: a 503 that says so, on the pages and the JSON."""
    import boto3
    from botocore.config import Config

    port = 9  # discard: nothing listens on loopback's port 9
    down = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    _, dynamodb, _ = aws
    source = Source(
        Names("console-jobs", "console-jobs-dlq", "console-jobs"), lambda: down, lambda: dynamodb
    )
    client = create_app(source).test_client()
    page = client.get("/console/")
    assert page.status_code == 503
    assert "the emulator is not answering" in page.get_data(as_text=True)
    assert "make run" in page.get_data(as_text=True)
    answer = client.get("/console/api/now")
    assert answer.status_code == 503 and "not answering" in answer.get_json()["error"]
    assert client.get("/console/dlq").status_code == 503


def test_a_refused_call_is_said_plainly(aws):
    """A queue that is not there (another stack's name, or not provisioned): a 502 that
    names the call and SQS's error, not a 500."""
    sqs, dynamodb, _ = aws
    source = Source(
        Names("no-such-jobs", "no-such-jobs-dlq", "console-jobs"), lambda: sqs, lambda: dynamodb
    )
    page = create_app(source).test_client().get("/console/dlq")
    assert page.status_code == 502
    assert re.search(r"GetQueueUrl refused: \S*NonExistentQueue", page.get_data(as_text=True))
