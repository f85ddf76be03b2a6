"""Visibility heartbeat: a job running 3x the queue's visibility timeout executes once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from celery import states

from tasks.debug import add, sleep
from tasks.ops.settings import Settings
from tasks.worker.sqs_io import SqsIO
from tests.conftest import wait_until
from tests.faults import drained, received_count, side_queue, submit

VISIBILITY = 3


@pytest.mark.integration
@pytest.mark.fault
def test_a_job_three_times_longer_than_the_visibility_timeout_runs_once(stack, start_worker):
    queue = side_queue(stack, "visibility", visibility=VISIBILITY)
    # Two pool processes: a lapsed message would be taken by the idle one at once.
    worker = start_worker(concurrency=2, env=queue.env)
    long_job = submit(stack, sleep.s(seconds=3 * VISIBILITY + 1, steps=5), queue)
    wait_until(lambda: stack.status(long_job) == states.SUCCESS, 60, message="long job done")
    short_job = submit(stack, add.s(x=1, y=2), queue)
    wait_until(lambda: stack.status(short_job) == states.SUCCESS, 30, message="short job done")

    item = stack.item(long_job)
    assert item["attempts"]["N"] == "1"
    assert received_count(worker.log(), long_job) == 1
    wait_until(lambda: drained(stack, queue.url), 10, message="queue empty")
    assert stack.queue_counts(queue.dlq_url) == (0, 0)
    # Acknowledged messages are never extended: no failed extension was logged.
    assert "could not extend" not in worker.log()


@pytest.mark.integration
@pytest.mark.fault
def test_a_countdown_held_longer_than_the_visibility_timeout_runs_once(stack, start_worker):
    queue = side_queue(stack, "countdown", visibility=VISIBILITY)
    worker = start_worker(concurrency=2, env=queue.env)
    job = submit(stack, add.s(x=2, y=2).set(countdown=3 * VISIBILITY), queue)
    wait_until(lambda: stack.status(job) == states.SUCCESS, 60, message="countdown job done")
    assert received_count(worker.log(), job) == 1
    assert stack.item(job)["attempts"]["N"] == "1"
    wait_until(lambda: drained(stack, queue.url), 10, message="queue empty")


@pytest.mark.integration
@pytest.mark.fault
def test_without_the_heartbeat_the_same_job_would_run_twice(stack, start_worker):
    """The control: proves the test above can fail (SQS redelivers a lapsed message)."""
    queue = side_queue(stack, "noheartbeat", visibility=VISIBILITY)
    worker = start_worker(concurrency=2, env={**queue.env, "JOBS_VISIBILITY_HEARTBEAT": "off"})
    long_job = submit(stack, sleep.s(seconds=3 * VISIBILITY + 1, steps=5), queue)
    wait_until(
        lambda: received_count(worker.log(), long_job) >= 2,
        30,
        message="the lapsed message delivered again",
    )
    wait_until(lambda: stack.status(long_job) == states.SUCCESS, 60, message="job done")


# --- unit tests: the heartbeat's choices, against moto in process ---------------


def _held(
    monkeypatch, job_id: str, queue_url: str, receipt: str, acknowledged: bool, eta=None
) -> SimpleNamespace:
    from celery.worker import state as worker_state

    message = SimpleNamespace(
        delivery_info={"sqs_queue": queue_url, "sqs_message": {"ReceiptHandle": receipt}}
    )
    request = SimpleNamespace(id=job_id, acknowledged=acknowledged, _message=message, eta=eta)
    monkeypatch.setitem(worker_state.requests, job_id, request)
    return request


def test_the_heartbeat_extends_held_messages_and_skips_acknowledged_ones(
    in_process_aws, monkeypatch
):
    import boto3

    from tasks.worker import visibility

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="beat", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    for body in ("held", "acked"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    by_body = {m["Body"]: m["ReceiptHandle"] for m in received}
    _held(monkeypatch, "held-job", url, by_body["held"], acknowledged=False)
    _held(monkeypatch, "acked-job", url, by_body["acked"], acknowledged=True)

    step = visibility.VisibilityHeartbeat(Settings.from_env())
    step.timeout = 30
    io = SqsIO(Settings.from_env())
    monkeypatch.setattr(visibility, "sqs_io", lambda settings: io)
    step.beat()
    io.close()  # waits for the batch call
    assert io.calls == {"ChangeMessageVisibilityBatch": 1}
    time.sleep(1.5)  # the fault under test: time passing beyond the visibility timeout
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in again] == ["acked"]


def test_the_heartbeat_never_asks_past_the_12_hour_ceiling(monkeypatch):
    from tasks.worker import visibility

    step = visibility.VisibilityHeartbeat(Settings.from_env())
    step.timeout = 300
    _held(monkeypatch, "old", "http://q", "r-old", acknowledged=False)
    _held(monkeypatch, "new", "http://q", "r-new", acknowledged=False)
    now = time.monotonic()
    step.received_at = {"r-old": now - visibility.SQS_MAX_VISIBILITY + 100}
    timeouts = {receipt: t for _url, receipt, t in step.entries()}
    # 100 s of the 12 hours left, less a minute's margin; the new one gets the full timeout.
    assert timeouts == {"r-old": pytest.approx(40, abs=2), "r-new": 300}


def test_an_eta_beyond_what_sqs_can_hold_is_refused_with_a_clear_error():
    from tasks.worker import visibility

    stored, acked = [], []
    backend = SimpleNamespace(record_quietly=lambda *a, **k: stored.append(a[:3]))

    def request(hours: float) -> SimpleNamespace:
        return SimpleNamespace(
            id=f"eta-{hours}",
            eta=(datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
            task=SimpleNamespace(backend=backend),
            _context=None,
            _message=None,
            acknowledge=lambda: acked.append(True),
        )

    visibility.refuse_eta_beyond_limit(request(2))
    assert stored == [] and acked == []
    visibility.refuse_eta_beyond_limit(request(13))
    ((job_id, error, state),) = stored
    assert (job_id, state) == ("eta-13", states.FAILURE)
    assert isinstance(error, visibility.EtaBeyondVisibilityLimit)
    assert "due in 13.0 h" in str(error) and "at most 11 h" in str(error)
    assert acked == [True]
