"""Deferral of jobs due further ahead than SQS holds them (issue 20, items 2 and 5).

The oracle is EventBridge Scheduler's API reference (CreateSchedule: Name 1-64 of
[0-9a-zA-Z-_.], `at(yyyy-mm-ddThh:mm:ss)`, ActionAfterCompletion, a templated SQS target
with Arn, RoleArn and Input; ConflictException for a name that exists;
ResourceNotFoundException for one that does not) and its documented delivery: a one-time
schedule fires at its time, at least once. moto keeps schedules but fires nothing, so the
request's shape is also asserted against botocore's own service model (Stubber validates
every parameter), and the firing is played by tasks.ops.local_scheduler.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tasks.ops import one_time_schedules as ots
from tasks.ops.local_scheduler import OneTimeSchedules
from tasks.ops.settings import Settings
from tasks.worker import deferral
from tasks.worker.middleware.base import Taken
from tests.conftest import wait_until

ROLE = "arn:aws:iam::123456789012:role/t1-scheduler"
SETTINGS = Settings(
    region="us-east-1",
    queue_name="t1-jobs",
    dlq_name="t1-jobs-dlq",
    schedule_group="t1-schedules",
    scheduler_role_arn=ROLE,
)
NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def envelope(job_id: str, eta: datetime | None, retries: int = 0) -> str:
    """A kombu SQS body as the submitting side writes it (base64 of the JSON envelope)."""
    headers = {"id": job_id, "task": "tasks.debug.add", "retries": retries}
    if eta is not None:
        headers["eta"] = eta.isoformat()
    return base64.b64encode(json.dumps({"headers": headers, "body": "W10="}).encode()).decode()


# ---- tasks.ops.one_time_schedules ------------------------------------------------------------


def test_a_schedule_name_is_the_jobs_own_valid_and_stable():
    assert ots.schedule_name("5f0c-ab", 2) == "job-5f0c-ab-2"
    odd = ots.schedule_name("orders/42 (retry)", 0)
    long = ots.schedule_name("x" * 200, 7)
    for name in (odd, long):
        assert 1 <= len(name) <= 64 and ots.NAME_CHARS.match(name) and name.startswith("job-")
    assert odd == ots.schedule_name("orders/42 (retry)", 0) != ots.schedule_name("orders/43", 0)
    assert long.endswith("-7")


def test_at_is_utc_rounded_up_to_eventbridges_minute_so_never_before_the_eta():
    paris = datetime(2027, 1, 2, 3, 4, 5, 1, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert ots.at_expression(paris) == "at(2027-01-02T03:05:00)"  # UTC, the next minute
    on_the_minute = datetime(2027, 1, 2, 3, 4, 0, tzinfo=UTC)
    assert ots.at_expression(on_the_minute) == "at(2027-01-02T03:04:00)"
    # The local scheduler fires on the second: locally the rounding is to the second.
    assert ots.at_expression(paris, 1) == "at(2027-01-02T03:04:06)"
    assert ots.precision(SETTINGS) == 60 and ots.precision(Settings(target="local")) == 1
    assert ots.parse_at("at(2027-01-02T03:04:05)") == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ots.parse_at("rate(1 hour)") is None


def test_create_schedule_request_matches_the_api_reference():
    """Stubber checks every parameter against botocore's model of CreateSchedule."""
    client = boto3.client("scheduler", region_name="us-east-1")
    body = envelope("j1", NOW + timedelta(days=10))
    at = NOW + timedelta(days=10)
    with Stubber(client) as stub:
        stub.add_response(
            "create_schedule",
            {"ScheduleArn": "arn:aws:scheduler:us-east-1:123456789012:schedule/t1-schedules/x"},
            {
                "Name": "job-j1-0",
                "GroupName": "t1-schedules",
                "Description": "a deferred job (tasks.worker.deferral)",
                "ScheduleExpression": "at(2026-12-16T12:00:00)",
                "ScheduleExpressionTimezone": "UTC",
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED",
                "ActionAfterCompletion": "DELETE",
                "Target": {
                    "Arn": "arn:aws:sqs:us-east-1:123456789012:t1-jobs",
                    "RoleArn": ROLE,
                    "Input": body,  # the body verbatim: the queue gets the very message back
                    "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:t1-jobs-dlq"},
                    "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10},
                },
            },
        )
        stub.add_client_error("create_schedule", "ConflictException", http_status_code=409)
        stub.add_client_error("create_schedule", "ThrottlingException", http_status_code=429)
        assert ots.create(SETTINGS, name="job-j1-0", at=at, body=body, scheduler=client) is True
        assert ots.create(SETTINGS, name="job-j1-0", at=at, body=body, scheduler=client) is False
        with pytest.raises(ClientError, match="ThrottlingException"):
            ots.create(SETTINGS, name="job-j1-0", at=at, body=body, scheduler=client)
        stub.assert_no_pending_responses()


def test_create_and_cancel_on_moto(in_process_aws):
    client = boto3.client("scheduler", region_name="us-east-1")
    assert ots.ensure_group(SETTINGS, scheduler=client) is True
    assert ots.ensure_group(SETTINGS, scheduler=client) is False
    at = datetime.now(UTC) + timedelta(days=10)
    assert ots.create(SETTINGS, name="job-a-0", at=at, body="eyJ9", scheduler=client) is True
    assert ots.create(SETTINGS, name="job-a-0", at=at, body="eyJ9", scheduler=client) is False
    made = client.get_schedule(GroupName="t1-schedules", Name="job-a-0")
    fires = ots.parse_at(made["ScheduleExpression"])
    assert at <= fires < at + timedelta(seconds=60) and fires.second == 0
    assert made["ActionAfterCompletion"] == "DELETE" and made["Target"]["Input"] == "eyJ9"
    assert ots.cancel(SETTINGS, "job-a-0", scheduler=client) is True
    assert ots.cancel(SETTINGS, "job-a-0", scheduler=client) is False


# ---- the worker middleware -----------------------------------------------------------------


class Records:
    """`refused`: the record a refusal hands back (DynamoDB's ALL_OLD on a failed condition)."""

    def __init__(
        self, waiting: bool = True, fail: Exception | None = None, refused: dict | None = None
    ) -> None:
        self.calls: list[tuple] = []
        self.waiting, self.fail, self.refused = waiting, fail, refused or {}

    def mark_scheduled(self, job_id, *, task, eta, schedule, retries=None, refusal=None):
        self.calls.append((job_id, task, eta, schedule))
        if self.fail:
            raise self.fail
        if not self.waiting and refusal is not None:
            refusal.update(self.refused)
        return self.waiting


class Consumer:
    def __init__(self, records: Records) -> None:
        self.app = SimpleNamespace(backend=SimpleNamespace(records=records))
        self.soon: list = []

    def call_soon(self, fn, *args):
        self.soon.append((fn, args))


class Message:
    def __init__(self, job_id: str, eta: datetime | None, retries: int = 0) -> None:
        self.body = envelope(job_id, eta, retries)
        self.headers = json.loads(base64.b64decode(self.body))["headers"]
        self.delivery_info = {
            "sqs_queue": "https://sqs/q",
            "sqs_message": {
                "Body": self.body,
                "ReceiptHandle": f"r-{job_id}",
                "Attributes": {"ApproximateReceiveCount": "2"},
            },
        }
        self.outcome: list[str] = []

    def ack(self):
        self.outcome.append("ack")

    def reject(self, requeue=False):
        self.outcome.append(f"reject(requeue={requeue})")


class Scheduler:
    """What the middleware sees of EventBridge Scheduler; `error` makes CreateSchedule fail."""

    def __init__(self, error: str | None = None) -> None:
        self.made: dict[str, dict] = {}
        self.deleted: list[str] = []
        self.error = error
        self.lock = threading.Lock()

    def create_schedule(self, **request):
        with self.lock:
            if self.error:
                raise ClientError({"Error": {"Code": self.error}}, "CreateSchedule")
            if request["Name"] in self.made:
                raise ClientError({"Error": {"Code": "ConflictException"}}, "CreateSchedule")
            self.made[request["Name"]] = request

    def delete_schedule(self, GroupName, Name):
        self.deleted.append(Name)
        self.made.pop(Name)


@pytest.fixture
def scheduler(monkeypatch) -> Scheduler:
    fake = Scheduler()
    monkeypatch.setattr(ots, "scheduler_client", lambda settings: fake)
    return fake


def run_on_loop(consumer: Consumer, message: Message) -> list[str]:
    """Wait for the middleware's answer to reach the loop, then run it there."""
    wait_until(lambda: consumer.soon, 10, 0.01, "the deferral's answer")
    for fn, args in consumer.soon:
        fn(*args)
    return message.outcome


def test_a_job_due_too_far_ahead_is_scheduled_recorded_then_acknowledged(scheduler):
    records = Records()
    consumer, middleware = Consumer(records), deferral.Deferral(SETTINGS, clock=lambda: NOW)
    eta = NOW + timedelta(days=10)
    message = Message("j-10d", eta, retries=1)
    taken = middleware.screen_message(consumer, message)
    assert isinstance(taken, Taken) and taken.job_id == "j-10d"
    assert run_on_loop(consumer, message) == ["ack"]
    (made,) = scheduler.made.values()
    assert made["Name"] == "job-j-10d-1" and made["Target"]["Input"] == message.body
    assert made["ScheduleExpression"] == "at(2026-12-16T12:00:00)"
    # The record's eta as the 202 answer writes one (to the millisecond, +00:00).
    recorded = ("j-10d", "tasks.debug.add", "2026-12-16T12:00:00.000+00:00", "job-j-10d-1")
    assert records.calls == [recorded]

    # The same message delivered again: the schedule exists (ConflictException), it is
    # recorded and acknowledged again, and still one schedule.
    again, consumer2 = Message("j-10d", eta, retries=1), Consumer(records)
    assert isinstance(middleware.screen_message(consumer2, again), Taken)
    assert run_on_loop(consumer2, again) == ["ack"]
    assert list(scheduler.made) == ["job-j-10d-1"] and len(records.calls) == 2


def test_what_sqs_or_the_worker_can_hold_is_left_to_them(scheduler):
    middleware = deferral.Deferral(SETTINGS, clock=lambda: NOW)
    consumer = Consumer(Records())
    for eta in (None, NOW + timedelta(seconds=900), NOW - timedelta(hours=1)):
        assert middleware.screen_message(consumer, Message("j", eta)) is None
    # No scheduler role: no deferral (the worker holds up to 11 h and refuses beyond).
    off = deferral.Deferral(Settings(region="us-east-1"), clock=lambda: NOW)
    assert off.screen_message(consumer, Message("j", NOW + timedelta(days=1))) is None
    # Arguments in S3 that expire before the ETA: not deferred.
    far = Message("j", NOW + timedelta(days=30))
    far.headers["payload_ref"] = {"key": "payloads/j.json"}
    assert middleware.screen_message(consumer, far) is None
    assert scheduler.made == {} and consumer.soon == []


@pytest.fixture
def hidden(monkeypatch) -> list[tuple]:
    """The visibility changes the middleware asks of SQS."""
    calls: list[tuple] = []

    def change_visibility(*args, **kwargs):
        calls.append((*args, kwargs))

    monkeypatch.setattr(
        deferral, "sqs_io", lambda settings: SimpleNamespace(change_visibility=change_visibility)
    )
    return calls


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalServerException"])
def test_a_failed_create_schedule_gives_the_message_back_never_acks_it(scheduler, hidden, code):
    scheduler.error = code
    records = Records()
    consumer, middleware = Consumer(records), deferral.Deferral(SETTINGS, clock=lambda: NOW)
    message = Message("j-throttled", NOW + timedelta(hours=2))
    assert isinstance(middleware.screen_message(consumer, message), Taken)
    # Not deleted: its prefetch slot is freed and SQS delivers it again after a backoff.
    assert run_on_loop(consumer, message) == ["reject(requeue=False)"]
    assert hidden == [("https://sqs/q", "r-j-throttled", {"timeout": 60})]
    assert records.calls == []


def test_a_record_failure_after_the_schedule_leaves_the_message_for_the_next_try(scheduler, hidden):
    records = Records(fail=RuntimeError("DynamoDB unavailable"))
    consumer, middleware = Consumer(records), deferral.Deferral(SETTINGS, clock=lambda: NOW)
    message = Message("j-norecord", NOW + timedelta(hours=2))
    middleware.screen_message(consumer, message)
    assert run_on_loop(consumer, message) == ["reject(requeue=False)"]
    assert list(scheduler.made) == ["job-j-norecord-0"]  # made: the next try finds it
    records.fail = None
    again, consumer2 = Message("j-norecord", NOW + timedelta(hours=2)), Consumer(records)
    middleware.screen_message(consumer2, again)
    assert run_on_loop(consumer2, again) == ["ack"]
    assert list(scheduler.made) == ["job-j-norecord-0"] and len(records.calls) == 2


def test_a_job_revoked_or_run_meanwhile_loses_its_schedule_and_its_message(scheduler):
    consumer = Consumer(Records(waiting=False))
    message = Message("j-revoked", NOW + timedelta(hours=2))
    deferral.Deferral(SETTINGS, clock=lambda: NOW).screen_message(consumer, message)
    assert run_on_loop(consumer, message) == ["ack"]
    assert scheduler.deleted == ["job-j-revoked-0"] and scheduler.made == {}


def test_a_retry_received_before_its_run_recorded_it_is_given_back_not_dropped(scheduler, hidden):
    # Celery's retry() publishes the new message before its run writes RETRY: a worker
    # can receive it while the record still says STARTED with the run's retries.
    running = {"status": {"S": "STARTED"}, "retries": {"N": "0"}}
    records = Records(waiting=False, refused=running)
    consumer, middleware = Consumer(records), deferral.Deferral(SETTINGS, clock=lambda: NOW)
    retry = Message("j-retry", NOW + timedelta(hours=1), retries=1)
    middleware.screen_message(consumer, retry)
    assert run_on_loop(consumer, retry) == ["reject(requeue=False)"]  # back to SQS, not acked
    assert list(scheduler.made) == ["job-j-retry-1"] and scheduler.deleted == []
    # Received again once the run wrote RETRY: recorded SCHEDULED and acknowledged.
    records.waiting = True
    again, consumer2 = Message("j-retry", NOW + timedelta(hours=1), retries=1), Consumer(records)
    middleware.screen_message(consumer2, again)
    assert run_on_loop(consumer2, again) == ["ack"]
    assert list(scheduler.made) == ["job-j-retry-1"]


def test_a_duplicate_of_the_running_runs_own_message_loses_its_schedule(scheduler):
    running = {"status": {"S": "STARTED"}, "retries": {"N": "1"}}
    consumer = Consumer(Records(waiting=False, refused=running))
    message = Message("j-dup", NOW + timedelta(hours=1), retries=1)
    deferral.Deferral(SETTINGS, clock=lambda: NOW).screen_message(consumer, message)
    assert run_on_loop(consumer, message) == ["ack"]
    assert scheduler.deleted == ["job-j-dup-1"]


# ---- the local scheduler fires them --------------------------------------------------------


def test_the_local_scheduler_fires_a_due_one_time_schedule_once_and_deletes_it(in_process_aws):
    region = "us-east-1"
    scheduler = boto3.client("scheduler", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName="t1-jobs")["QueueUrl"]
    ots.ensure_group(SETTINGS, scheduler=scheduler)
    clock = [NOW.timestamp()]
    body_due, body_later = envelope("due", NOW), envelope("later", NOW + timedelta(days=10))
    ots.create(SETTINGS, name="job-due-0", at=NOW, body=body_due, scheduler=scheduler)
    ots.create(
        SETTINGS,
        name="job-later-0",
        at=NOW + timedelta(days=10),
        body=body_later,
        scheduler=scheduler,
    )
    firer = OneTimeSchedules(scheduler, sqs, "t1-schedules", clock=lambda: clock[0])
    clock[0] -= 1
    assert firer.fire_due() == 0  # a second early: nothing
    clock[0] += 1
    assert firer.fire_due() == 1 and firer.fire_due() == 0
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == [body_due]  # the Input, verbatim, once
    names = [s["Name"] for s in scheduler.list_schedules(GroupName="t1-schedules")["Schedules"]]
    assert names == ["job-later-0"]
