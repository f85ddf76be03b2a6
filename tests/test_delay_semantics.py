"""Countdowns where Celery's features meet them (issue 20, item 4), with a real worker.

The oracles are Celery's pages: calling.html, "ETA and Countdown" (the task "is guaranteed to
be executed at some time *after* the specified date and time"); tasks.html, "Retrying"
(`self.retry(countdown=...)` "will send a new message, using the same task-id", due after
the countdown); canvas.html, "Chains" (each member is sent when the one before it has
finished, with its own options: a member's countdown counts from then). Here every such
publish takes the same path as `apply_async(countdown=...)` (tasks/submit/sqs_delay.py):
within 15 minutes SQS holds the message (ApproximateNumberOfMessagesDelayed) and no worker
does (nothing in flight). `expires=` earlier than the eta: tests/test_celery_semantics.py
(`test_an_expired_task_is_revoked`) and, deferred, the message the schedule sends back is the
deferred one verbatim, its `expires` header included (tests/test_deferral.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery import chain, states

from tests.conftest import wait_until

pytestmark = pytest.mark.integration

COUNTDOWN = 2


@pytest.fixture
def side(stack, start_worker):
    """A queue of its own (its counts are this test's alone), a worker on it, a client."""
    from tasks.app_factory import create_app
    from tasks.ops.settings import Settings
    from tests.faults import side_queue

    queue = side_queue(stack, "semantics-delay")
    env = {**queue.env, "JOBS_EXTRA_MODULES": "tests.jobs,tests.celery_semantics_jobs"}
    start_worker(concurrency=1, env=env)
    client = create_app(Settings.from_env({**stack.env, **queue.env}), role="client")

    def counts() -> tuple[int, int, int]:
        """(visible, in flight, delayed) messages of the queue."""
        a = stack.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
        return (
            int(a["ApproximateNumberOfMessages"]),
            int(a["ApproximateNumberOfMessagesNotVisible"]),
            int(a["ApproximateNumberOfMessagesDelayed"]),
        )

    return client, counts


def started(stack, job_id: str) -> datetime:
    return datetime.fromisoformat(stack.item(job_id)["started_at"]["S"])


def finished(stack, job_id: str) -> datetime:
    return datetime.fromisoformat(stack.item(job_id)["finished_at"]["S"])


def test_a_retry_with_a_countdown_waits_in_sqs_not_in_the_worker(stack, side):
    client, counts = side
    res = client.send_task("tests.celery_semantics_jobs.retry_once", kwargs={"countdown": 3})
    wait_until(lambda: res.state == states.RETRY, 30, interval=0.05, message="RETRY")
    # retry() sent the message just before this write: its eta is 3 s after about then.
    retried = datetime.fromisoformat(stack.item(res.id)["updated_at"]["S"])
    # The retry's message is delayed by SQS: nothing visible, nothing in flight.
    wait_until(lambda: counts() == (0, 0, 1), 2, interval=0.05, message="held by SQS")
    assert res.get(timeout=30) == 1
    assert started(stack, res.id) >= retried + timedelta(seconds=3 - 0.5)
    assert stack.item(res.id)["retries"]["N"] == "1"


def test_chain_members_count_their_countdowns_from_the_previous_finish(stack, side):
    client, counts = side
    add = client.signature("tasks.debug.add")
    sent = datetime.now(UTC)
    res = chain(
        add.clone(args=(1, 1)).set(countdown=COUNTDOWN),
        add.clone(args=(2,)).set(countdown=COUNTDOWN),
    ).apply_async()
    first = res.parent
    assert counts() == (0, 0, 1)  # the first member waits in SQS
    wait_until(lambda: first.state == states.SUCCESS, 30, interval=0.05, message="first ran")
    # The second is sent when the first has finished, and SQS holds it for its countdown.
    wait_until(lambda: counts() == (0, 0, 1), 1.5, interval=0.05, message="second held")
    assert res.get(timeout=30) == 4
    assert started(stack, first.id) >= sent + timedelta(seconds=COUNTDOWN)
    # Celery sends the next member just before it writes the first one's result.
    assert started(stack, res.id) >= finished(stack, first.id) + timedelta(seconds=COUNTDOWN - 0.5)


def test_a_post_due_in_two_hours_is_sent_at_once_for_the_worker_to_defer(stack):
    """The shim renders API Gateway's template against moto's SQS: `X-Countdown: 7200` and an
    `Eta` ten days ahead are sent with no DelaySeconds (visible at once, so a worker defers
    them to a schedule and records SCHEDULED now), each carrying its eta; two delay headers
    are a 400 and send nothing."""
    import base64
    import dataclasses
    import json

    from api_shim.app import create_app as create_shim
    from tasks.ops.settings import Settings
    from tests.faults import side_queue

    queue = side_queue(stack, "post-far")
    settings = Settings.from_env({**stack.env, **queue.env})
    shim = create_shim(dataclasses.replace(settings, api_keys=())).test_client()
    in_ten_days = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    etas = {}
    for headers in ({"X-Countdown": "7200"}, {"Eta": in_ten_days}):
        answer = shim.post("/tasks/tasks.debug.add", json={"x": 1, "y": 2}, headers=headers)
        assert answer.status_code == 202, answer.get_json()
        etas[answer.get_json()["job_id"]] = answer.get_json()["eta"]
    refused = shim.post(
        "/tasks/tasks.debug.add",
        json={"x": 1, "y": 2},
        headers={"X-Countdown": "7200", "Eta": in_ten_days},
    )
    assert refused.status_code == 400
    assert refused.get_json()["message"].startswith("Give at most one of")
    got = stack.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    sent = {}
    for message in got.get("Messages", []):
        headers = json.loads(base64.b64decode(message["Body"]))["headers"]
        sent[headers["id"]] = headers["eta"]
    assert sent == etas  # both visible now, nothing else sent
    assert datetime.fromisoformat(etas[next(iter(etas))]) > datetime.now(UTC) + timedelta(hours=1)
