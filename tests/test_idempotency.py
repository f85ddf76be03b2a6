"""Idempotent submission, end to end: gunicorn serving the shim, moto's server, a real worker.

A POST with an `Idempotency-Key` (a UUID) uses the key as the job id, so every retry answers
202 with the same job id, and the run lease (tasks.results.run_lease) lets the job run once
however many of its messages arrive. `apply_async(task_id=...)` from Python gets the same.
A malformed key, or X-Callback-Url, is a 400 saying the form, and no message is sent.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import states
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import launch_worker, wait_until
from tests.faults import drained, side_queue
from tests.http_shim import Shim, http, launch_shim, stop_shim

pytestmark = pytest.mark.integration

EXTRA = {"JOBS_EXTRA_MODULES": "tests.jobs,tests.idempotency_jobs"}
TASK = "tests.idempotency_jobs.count_run"
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
KEY_MESSAGE = "Idempotency-Key must be a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6"


@dataclasses.dataclass
class Lane:
    shim: Shim
    worker: object


@pytest.fixture(scope="module")
def lane(stack) -> Iterator[Lane]:
    """One shim and one prefork worker (2 processes) that both know the counting job."""
    shim = launch_shim({**stack.env, **EXTRA}, "idempotency")
    worker = launch_worker(stack, "idempotency", concurrency=2, env=EXTRA)
    yield Lane(shim, worker)
    stop_shim(shim)
    worker.close()


def dropped(log: str, job_id: str) -> int:
    return sum(
        1
        for line in log.splitlines()
        if f"[{job_id}] is already " in line and "duplicate message dropped" in line
    )


def test_the_same_key_twenty_times_at_once_runs_once(stack, lane, tmp_path):
    key = str(uuid.uuid4())
    out = tmp_path / "runs.txt"
    url = f"{lane.shim.url}/tasks/{TASK}"
    body = {"path": str(out), "hold": 1.0}

    def post(i: int):  # half of them spell the key in upper case: the same job id
        return http("POST", url, body, headers={"Idempotency-Key": key.upper() if i % 2 else key})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert [a.status for a in answers] == [202] * 20, [a.body for a in answers]
    assert {a.body["job_id"] for a in answers} == {key}
    assert {a.body["status_url"] for a in answers} == {f"/jobs/{key}"}

    job = lane.shim.wait(key)
    assert job["status"] == states.SUCCESS and job["result"] == key
    wait_until(lambda: drained(stack), 60, message="all 20 messages consumed")
    wait_until(lambda: dropped(lane.worker.log(), key) == 19, 30, message="19 duplicates dropped")
    assert out.read_text().count(key) == 1  # one execution
    assert lane.worker.log().count(f"[{key}] succeeded") == 1
    item = stack.item(key)
    assert item["status"]["S"] == states.SUCCESS and item["attempts"]["N"] == "1"
    assert "run_lease" not in item and "run_token" not in item

    # A client that retries after the job finished gets the same answer; nothing runs.
    again = post(0)
    assert again.status == 202 and again.body["job_id"] == key
    wait_until(lambda: dropped(lane.worker.log(), key) == 20, 30, message="the late retry dropped")
    assert out.read_text().count(key) == 1
    assert stack.item(key)["finished_at"] == item["finished_at"]


def test_apply_async_with_the_same_task_id_runs_once(stack, lane, tmp_path):
    from tasks import app  # by name: the test process does not register the job

    job_id = str(uuid.uuid4())
    out = tmp_path / "runs.txt"
    for _ in range(2):
        app.send_task(TASK, kwargs={"path": str(out), "hold": 0.5}, task_id=job_id)
    assert app.AsyncResult(job_id).get(timeout=60) == job_id
    wait_until(lambda: drained(stack), 60, message="both messages consumed")
    wait_until(lambda: dropped(lane.worker.log(), job_id) == 1, 30, message="one dropped")
    assert out.read_text().count(job_id) == 1


def post_message(queue_name: str, key: str, kwargs: dict) -> str:
    """The SQS body the deployed POST template makes for this key (as API Gateway renders)."""
    from tasks.http_contract.mapping_templates import fill_template
    from tasks.http_contract.vtl import Params, render

    form = render(
        fill_template("send_task.request", task_name=TASK, queue_name=queue_name),
        body=json.dumps(kwargs),
        params=Params(header={"Idempotency-Key": key}),
        context={"requestId": str(uuid.uuid4()), "requestTimeEpoch": 1},
    ).text
    return urllib.parse.parse_qs(form)["MessageBody"][0]


def test_a_long_run_keeps_its_lease_past_the_visibility_timeout(stack, start_worker, tmp_path):
    """The heartbeat renews the lease: a duplicate arriving after the first lease would have
    lapsed is still dropped, and the job runs once."""
    queue = side_queue(stack, "idem-lease", visibility=3)
    worker = start_worker(concurrency=2, env={**queue.env, **EXTRA})  # one free process
    key = str(uuid.uuid4())
    out = tmp_path / "runs.txt"
    body = post_message(queue.name, key, {"path": str(out), "hold": 8})
    stack.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    first = int(
        wait_until(
            lambda: (stack.item(key) or {}).get("run_lease"), 30, message="the first run's lease"
        )["N"]
    )
    wait_until(
        lambda: int(stack.item(key)["run_lease"]["N"]) > first, 10, message="the lease renewed"
    )
    wait_until(lambda: time.time() > first + 1, 10, message="the first lease's end passed")
    stack.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    wait_until(lambda: dropped(worker.log(), key) == 1, 30, message="the duplicate dropped")
    assert stack.item(key)["status"]["S"] == states.STARTED  # still running: dropped, not run
    wait_until(lambda: stack.status(key) == states.SUCCESS, 30, message="SUCCESS")
    assert out.read_text().count(key) == 1


# --- the headers' forms, against the shim's Gateway in process (no worker on its queue) -----
@pytest.fixture(scope="module")
def gateway(stack):
    from api_shim.gateway import Gateway
    from tasks.ops.settings import Settings

    queue = side_queue(stack, "idem-headers")
    gw = Gateway(
        dataclasses.replace(Settings.from_env(), queue_name=queue.name, queue_url=queue.url)
    )
    return gw, queue


def submit(gw, headers: dict[str, str]):
    from api_shim.gateway import Incoming

    return gw.handle(
        Incoming(
            method="POST",
            path="/tasks/tasks.debug.add",
            body=b'{"x": 1, "y": 2}',
            headers={"Content-Type": "application/json", **headers},
        )
    )


def take_message(stack, queue_url: str) -> dict | None:
    got = stack.sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    for message in got:
        stack.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert len(got) <= 1, got
    return json.loads(base64.b64decode(got[0]["Body"])) if got else None


def test_a_malformed_key_is_400_and_sends_nothing(stack, gateway):
    gw, queue = gateway
    reply = submit(gw, {"Idempotency-Key": "12345"})
    assert reply.status == 400 and json.loads(reply.text()) == {"message": KEY_MESSAGE}
    reply = submit(gw, {"X-Callback-Url": "http://internal.example/hook"})
    assert reply.status == 400
    assert json.loads(reply.text())["message"].startswith("X-Callback-Url must be an https URL")
    assert stack.queue_counts(queue.url) == (0, 0)
    assert take_message(stack, queue.url) is None


KEYS = st.one_of(
    st.none(),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.text(max_size=40),
    st.uuids().map(lambda u: f" {u}"),
    st.uuids().map(lambda u: str(u)[:-1] + "g"),
)
URLS = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.from_regex(r"https://[a-z]{1,8}\.example/[ -~]{0,30}", fullmatch=True),
    st.from_regex(
        r"http://(127\.0\.0\.1|localhost|\[::1\]|10\.0\.0\.1)"
        r"(:[0-9]{1,5})?/[a-z]{0,5}",
        fullmatch=True,
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=KEYS, url=URLS)
def test_any_header_values_are_202_or_400_never_another_job_id(stack, gateway, key, url):
    gw, queue = gateway
    headers = {
        name: value
        for name, value in (("Idempotency-Key", key), ("X-Callback-Url", url))
        if value is not None
    }
    reply = submit(gw, headers)
    assert reply.status in (202, 400), (reply.status, reply.text())
    message = take_message(stack, queue.url)
    if reply.status == 400:
        assert message is None
        return
    answered = json.loads(reply.text())["job_id"]
    assert message is not None and message["headers"]["id"] == answered
    if key:  # an empty header is no header
        assert UUID.fullmatch(key) and answered == key.lower()
    if url:
        assert message["headers"]["callback_url"] == url
    else:
        assert "callback_url" not in message["headers"]
