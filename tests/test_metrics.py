"""Job metrics: CloudWatch embedded metric format (EMF) records in a real worker's output.

The records are checked against AWS's specification ("Specification: Embedded metric
format", CloudWatch User Guide): a root `_aws` member with Timestamp and CloudWatchMetrics,
each directive a Namespace, Dimensions (arrays of root member names) and Metrics (Name,
Unit) whose names are root members holding numbers.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from celery import states

from tasks.debug import fail, sleep
from tasks.ops.settings import Settings
from tasks.worker import metrics
from tests.conftest import wait_until
from tests.faults import side_queue, submit

# CloudWatch's units (MetricDatum.Unit), the values a MetricDefinition's Unit may take.
CLOUDWATCH_UNITS = {
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
}


def assert_emf(record: dict) -> None:
    """Fail unless `record` is an EMF document as AWS's specification defines one."""
    aws = record["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(aws["Timestamp"], int)
    assert abs(aws["Timestamp"] / 1000 - time.time()) < 3600  # epoch milliseconds
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Namespace"]) <= 255
        assert not directive["Namespace"].startswith("AWS/")
        assert isinstance(directive["Dimensions"], list)
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for key in dimension_set:
                value = record[key]  # a dimension names a root member holding a string
                assert isinstance(value, str) and 1 <= len(value) <= 1024, (key, value)
        assert 1 <= len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            assert isinstance(definition["Name"], str) and 1 <= len(definition["Name"]) <= 255
            assert definition.get("Unit", "None") in CLOUDWATCH_UNITS
            value = record[definition["Name"]]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), definition


def emf_records(log: str) -> list[dict]:
    """Every line of a worker's output that is a whole JSON object with `_aws`."""
    found = []
    for line in log.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            found.append(json.loads(line))
    return found


def sent_timestamp_requested() -> bool:
    from tasks import app

    wanted = json.dumps(app.conf.broker_transport_options.get("fetch_message_attributes"))
    return "SentTimestamp" in wanted or '"all"' in wanted.lower()


# --- the pieces ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),  # local: logs stay readable
        ({"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x"}, True),  # on ECS
        (
            {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x", "JOBS_METRICS": "off"},
            False,
        ),
        ({"JOBS_METRICS": "on"}, True),
        ({"JOBS_METRICS": "OFF"}, False),
    ],
)
def test_metrics_are_on_on_ecs_or_when_asked_and_off_when_told(env, on):
    assert metrics.enabled(Settings.from_env(env)) is on


def test_the_queue_wait_comes_from_sqs_sent_timestamp():
    message = SimpleNamespace(
        delivery_info={
            "sqs_message": {
                "Attributes": {"SentTimestamp": "1700000000123", "ApproximateReceiveCount": "1"}
            }
        }
    )
    assert metrics.sent_timestamp(message) == pytest.approx(1700000000.123)
    unasked = SimpleNamespace(
        delivery_info={"sqs_message": {"Attributes": {"ApproximateReceiveCount": "1"}}}
    )
    assert metrics.sent_timestamp(unasked) is None
    assert metrics.sent_timestamp(None) is None


def test_a_record_follows_the_specification():
    record = metrics.emf_record(
        "sqs-jobs",
        {"Task": "tasks.debug.add", "Outcome": "SUCCESS"},
        {"JobDuration": 0.25, "QueueWait": 1.5, "Jobs": 1, "Attempts": 2},
        {"JobId": "j1"},
        time.time(),
    )
    assert_emf(record)
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["Task", "Outcome"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "JobDuration": "Seconds",
        "QueueWait": "Seconds",
        "Jobs": "Count",
        "Attempts": "Count",
    }


# --- a real worker --------------------------------------------------------------------------
@pytest.mark.integration
def test_a_worker_writes_one_emf_record_per_job_with_its_duration_and_outcome(stack, start_worker):
    queue = side_queue(stack, "metrics")
    worker = start_worker(concurrency=2, env={**queue.env, "JOBS_METRICS": "on"})
    submitted_at = time.time()
    slept = submit(stack, sleep.s(seconds=1.0, steps=1), queue)
    failed = submit(stack, fail.s(message="metrics test"), queue)
    wait_until(
        lambda: stack.status(slept) == states.SUCCESS and stack.status(failed) == states.FAILURE,
        30,
        message="both jobs done",
    )

    def records_for_both():
        by_job = {r.get("JobId"): r for r in emf_records(worker.log())}
        return by_job if {slept, failed} <= set(by_job) else None

    by_job = wait_until(records_for_both, 10, message="an EMF record for each job")
    elapsed = time.time() - submitted_at
    for record in by_job.values():
        assert_emf(record)
        directive = record["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == metrics.DEFAULT_NAMESPACE
        assert directive["Dimensions"] == [["Task", "Outcome"]]
        assert record["Jobs"] == 1
        assert record["Attempts"] == 1
        if sent_timestamp_requested():
            assert 0 <= record["QueueWait"] <= elapsed
        else:
            assert "QueueWait" not in record  # never a made-up value

    ok, bad = by_job[slept], by_job[failed]
    assert (ok["Task"], ok["Outcome"]) == ("tasks.debug.sleep", "SUCCESS")
    assert 1.0 <= ok["JobDuration"] < 20  # the job sleeps one second
    assert (bad["Task"], bad["Outcome"]) == ("tasks.debug.fail", "FAILURE")
    assert 0 < bad["JobDuration"] < 20
    # One record per job, each a line of its own.
    assert len([r for r in emf_records(worker.log()) if r["JobId"] in (slept, failed)]) == 2
    assert worker.alive()
