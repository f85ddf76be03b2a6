"""A countdown or ETA within 15 minutes is held by SQS (DelaySeconds), never by a worker.

The oracles: SQS's SendMessage ("DelaySeconds: the length of time, in seconds, for which to
delay a specific message. Valid values: 0 to 900"; a delayed message counts in
ApproximateNumberOfMessagesDelayed until it becomes available), and Celery's calling guide
("The task is guaranteed to be executed at some time *after* the specified date and time").
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import states
from celery.signals import before_task_publish
from hypothesis import given
from hypothesis import strategies as st

from tasks.submit.sqs_delay import MAX_DELAY_SECONDS, delay_seconds, delay_until_eta
from tests.conftest import wait_until

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
WAITS = st.one_of(
    st.floats(min_value=-86400, max_value=2 * MAX_DELAY_SECONDS, allow_nan=False),
    st.integers(min_value=-5, max_value=MAX_DELAY_SECONDS + 5).map(float),
)


@given(now=MOMENTS, wait=WAITS)
def test_the_delay_is_within_sqs_limits_and_never_before_the_eta(now, wait):
    eta = now + timedelta(seconds=wait)
    delay = delay_seconds(eta, now)
    exact = (eta - now).total_seconds()  # what a timedelta keeps (microseconds)
    if exact > MAX_DELAY_SECONDS:
        assert delay is None  # left to the worker, as before
        return
    assert delay is not None
    assert 0 <= delay <= MAX_DELAY_SECONDS
    # Delivered no earlier than the ETA, and later by less than the rounding (one second).
    assert now + timedelta(seconds=delay) >= eta
    assert delay < max(exact, 0) + 1
    assert delay == max(0, math.ceil(exact))


def step(eta, **properties):
    props = dict(properties)
    delay_until_eta(None, {"id": "j", "eta": eta}, props)
    return props


def test_the_publish_step_sets_delay_seconds_from_the_eta_header():
    now = datetime.now(UTC)
    assert step((now + timedelta(seconds=3.2)).isoformat())["DelaySeconds"] in (4, 5)
    assert step((now + timedelta(seconds=899)).isoformat())["DelaySeconds"] in (899, 900)
    # Naive: UTC, as the worker reads it.
    naive = (now + timedelta(seconds=60)).replace(tzinfo=None).isoformat()
    assert step(naive)["DelaySeconds"] in (60, 61)
    # Nothing to delay: no ETA, a past ETA, an unreadable one, or one beyond SQS's 900 s.
    for eta in (None, "", (now - timedelta(seconds=5)).isoformat(), "soon"):
        assert "DelaySeconds" not in step(eta)
    assert "DelaySeconds" not in step((now + timedelta(seconds=901)).isoformat())
    # The caller's own (kombu's option, e.g. apply_async(..., DelaySeconds=0)) is kept.
    soon = (now + timedelta(seconds=30)).isoformat()
    assert step(soon, DelaySeconds=0) == {"DelaySeconds": 0}
    assert step(soon, delay_seconds=5) == {"delay_seconds": 5}


def test_apply_async_with_a_countdown_publishes_delay_seconds(monkeypatch):
    """The whole submitting path: Celery's countdown becomes the eta header, and the message
    kombu's SQS channel sends has DelaySeconds (its `_put` reads the property)."""
    from tasks.celery_private import SQSChannel
    from tasks.client import app

    sent = []
    monkeypatch.setattr(SQSChannel, "_put", lambda self, queue, message, **kw: sent.append(message))
    monkeypatch.setattr(SQSChannel, "_new_queue", lambda self, queue, **kw: queue)
    monkeypatch.setattr(SQSChannel, "_size", lambda self, queue: 0)  # no endpoint here
    before = datetime.now(UTC)
    app.send_task("tasks.debug.add", args=(1, 2), countdown=5)
    app.send_task("tasks.debug.add", args=(1, 2), countdown=5, DelaySeconds=0)
    app.send_task("tasks.debug.add", args=(1, 2), countdown=3600)
    app.send_task("tasks.debug.add", args=(1, 2))
    delayed, opted_out, far, plain = sent
    assert delayed["properties"]["DelaySeconds"] in (5, 6)
    eta = datetime.fromisoformat(delayed["headers"]["eta"])
    assert before + timedelta(seconds=5) <= eta  # the eta header stays: the worker checks it
    assert opted_out["properties"]["DelaySeconds"] == 0
    assert "DelaySeconds" not in far["properties"]  # the worker holds it (today's path)
    assert "DelaySeconds" not in plain["properties"] and plain["headers"]["eta"] is None


def test_kombus_sqs_channel_sends_the_property_as_delay_seconds(monkeypatch):
    """The kombu behaviour this relies on (kombu 5.7's SQS `_put`): the message property
    becomes SendMessage's DelaySeconds; a message without it is sent without one."""
    from kombu import Connection

    url = "https://sqs.example/123456789012/jobs-q"
    conn = Connection(
        "sqs://",
        transport_options={"region": "eu-west-1", "predefined_queues": {"jobs-q": {"url": url}}},
    )
    channel = conn.default_channel
    sent: list[dict] = []

    class Client:
        def send_message(self, **kwargs):
            sent.append(kwargs)

    monkeypatch.setattr(channel, "sqs", lambda queue=None: Client())
    try:
        channel._put("jobs-q", {"body": "x", "properties": {"DelaySeconds": 7}})
        channel._put("jobs-q", {"body": "x", "properties": {}})
    finally:
        conn.release()
    assert sent[0]["DelaySeconds"] == 7 and sent[0]["QueueUrl"] == url
    assert "DelaySeconds" not in sent[1]


@pytest.mark.integration
def test_a_countdown_waits_in_sqs_not_in_the_worker(stack, start_worker):
    """A 3 s countdown from Python and a POST with `Delay-Seconds: 3` (the shim, rendering the
    API Gateway template, against moto's SQS): SQS counts both as delayed, no worker holds
    them (nothing in flight, nothing received), then each runs once, no earlier than its ETA."""
    import dataclasses

    from api_shim.app import create_app as create_shim
    from tasks.app_factory import create_app
    from tasks.ops.settings import Settings
    from tests.faults import received_count, side_queue

    queue = side_queue(stack, "delay")
    settings = Settings.from_env({**stack.env, **queue.env})
    client = create_app(settings, role="client")
    shim = create_shim(dataclasses.replace(settings, api_keys=())).test_client()
    worker = start_worker(concurrency=1, env=queue.env)

    def counts() -> tuple[int, int, int]:
        attrs = stack.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])
        a = attrs["Attributes"]
        return (
            int(a["ApproximateNumberOfMessages"]),
            int(a["ApproximateNumberOfMessagesNotVisible"]),
            int(a["ApproximateNumberOfMessagesDelayed"]),
        )

    etas: dict[str, str] = {}

    def keep_eta(headers=None, **_):
        etas[headers["id"]] = headers["eta"]

    before_task_publish.connect(keep_eta, weak=False)
    try:
        result = client.send_task("tasks.debug.add", args=(2, 3), countdown=3)
    finally:
        before_task_publish.disconnect(keep_eta)
    answer = shim.post(
        "/tasks/tasks.debug.add", json={"x": 4, "y": 5}, headers={"Delay-Seconds": "3"}
    )
    assert answer.status_code == 202, answer.get_json()
    posted = answer.get_json()
    etas[posted["job_id"]] = posted["eta"]
    jobs = {result.id: 5, posted["job_id"]: 9}
    # While they wait: delayed in SQS, nothing visible or in flight, not received by the worker.
    samples = 0
    while datetime.now(UTC) < min(datetime.fromisoformat(e) for e in etas.values()) - timedelta(
        seconds=0.5
    ):
        assert counts() == (0, 0, 2)
        assert all(received_count(worker.log(), job) == 0 for job in jobs)
        samples += 1
        time.sleep(0.2)  # sampling the wait, not standing in for a synchronisation
    assert samples >= 3
    assert result.get(timeout=30) == 5
    wait_until(
        lambda: stack.status(posted["job_id"]) == states.SUCCESS, 30, message="the POSTed job ran"
    )
    for job, value in jobs.items():
        item = stack.item(job)
        assert item["status"]["S"] == states.SUCCESS
        assert item["result"]["S"] == str(value)
        started = datetime.fromisoformat(item["started_at"]["S"])
        eta = datetime.fromisoformat(etas[job])
        assert started >= eta.replace(microsecond=eta.microsecond // 1000 * 1000)  # ms
        assert received_count(worker.log(), job) == 1
    wait_until(lambda: counts() == (0, 0, 0), 10, message="the queue drained")
