"""Duplicate deliveries and poison messages, sent with boto3 to real worker processes."""

from __future__ import annotations

import json
import uuid

import pytest
from celery import states

from tasks.debug import add
from tests.conftest import wait_until
from tests.envelopes import capture, envelope
from tests.jobs import append_line

pytestmark = pytest.mark.integration

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_the_same_message_delivered_twice_runs_its_side_effect_once(stack, start_worker, tmp_path):
    out = tmp_path / "effects.txt"
    job_id, body = capture(stack, append_line.s(path=str(out), line="once", hold=0.5))
    for _ in range(2):
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    start_worker(concurrency=2)
    wait_until(lambda: stack.status(job_id) == states.SUCCESS, 60, message="SUCCESS")
    wait_until(lambda: stack.queue_counts() == (0, 0), 60, message="both copies consumed")
    assert out.read_text() == "once\n"
    item = stack.item(job_id)
    assert item["status"]["S"] == states.SUCCESS
    assert item["result"]["S"] in ("true", "false")


def poison_cases() -> list[tuple[str, str | None, str, str]]:
    """(label, job id, SQS body, expected reason)."""
    cases = []
    unknown_id = str(uuid.uuid4())
    cases.append(
        (
            "unknown task",
            unknown_id,
            envelope(
                {"id": unknown_id, "task": "tasks.does_not_exist", "lang": "py"}, [[], {}, EMBED]
            ),
            "unknown task 'tasks.does_not_exist'",
        )
    )
    short_id = str(uuid.uuid4())
    cases.append(
        (
            "body without third element",
            short_id,
            envelope(
                {"id": short_id, "task": "tasks.debug.add", "lang": "py"}, [[], {"x": 1, "y": 2}]
            ),
            "[args, kwargs, embed]",
        )
    )
    no_type_id = str(uuid.uuid4())
    cases.append(
        (
            "missing content-type",
            no_type_id,
            envelope(
                {"id": no_type_id, "task": "tasks.debug.add", "lang": "py"},
                [[], {"x": 1, "y": 2}, EMBED],
                content_type=None,
            ),
            "content-type",
        )
    )
    cases.append(
        (
            "missing headers.id",
            None,
            envelope({"task": "tasks.debug.add", "lang": "py"}, [[], {"x": 1, "y": 2}, EMBED]),
            "headers.id",
        )
    )
    cases.append(("not an envelope at all", None, "definitely not a celery message", ""))
    return cases


def test_poison_messages_reach_the_dlq_with_a_reason_and_the_worker_keeps_serving(
    stack, start_worker
):
    # A queue of its own: the DLQ's exact count is asserted, and the session's shared queue
    # may hold what other tests' workers left behind.
    from tasks.ops.dlq import peek
    from tests.faults import side_queue, submit

    queue = side_queue(stack, "poison", max_receive=3)
    cases = poison_cases()
    for _, _, body, _ in cases:
        stack.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    worker = start_worker(concurrency=1, env=queue.env)

    def result_of(job_id: str) -> object:
        wait_until(lambda: stack.status(job_id) == states.SUCCESS, 60, message=job_id)
        return json.loads(stack.item(job_id)["result"]["S"])

    # The worker stays up and serves a good job while the poison circulates.
    assert result_of(submit(stack, add.s(x=20, y=22), queue)) == 42
    for label, job_id, _, reason in cases:
        if job_id is None:
            continue
        wait_until(lambda j=job_id: stack.status(j) == states.FAILURE, 60, message=label)
        error = stack.item(job_id)["error"]["M"]
        assert error["type"]["S"] == "PoisonMessage", label
        assert reason in error["message"]["S"], label

    def all_in_dlq() -> bool:
        visible, in_flight = stack.queue_counts(queue.url)
        dlq_visible, dlq_in_flight = stack.queue_counts(queue.dlq_url)
        return (visible, in_flight, dlq_visible + dlq_in_flight) == (0, 0, len(cases))

    wait_until(all_in_dlq, 90, interval=1, message="every poison message in the DLQ")
    dead = {m.task_id for m in peek(stack.sqs, queue.dlq_url) if m.task_id}
    assert {job_id for _, job_id, _, _ in cases if job_id} <= dead
    assert worker.alive()
    assert "Unrecoverable error" not in worker.log()
    assert result_of(submit(stack, add.s(x=1, y=1), queue)) == 2


def test_an_unknown_task_is_failure_only_on_its_last_receive(stack, start_worker):
    # A rolling deploy: an old worker that does not know a new task must not fail its job,
    # since the new worker that knows it will run it; alone, it fails it on the last receive.
    from tests.faults import side_queue, submit
    from tests.jobs import increment

    queue = side_queue(stack, "rolling", max_receive=3)
    old_env = {**queue.env, "JOBS_EXTRA_MODULES": ""}  # an image without tests.jobs
    old = start_worker(concurrency=1, env=old_env)
    handed_over = submit(stack, increment.s(1, by=2), queue)
    wait_until(lambda: stack.status(handed_over) == states.RETRY, 60, message="RETRY")
    error = stack.item(handed_over)["error"]["M"]
    assert "unknown task 'tests.jobs.increment'" in error["message"]["S"]
    old.stop()
    start_worker(concurrency=1, env=queue.env)  # the new image knows the task
    wait_until(lambda: stack.status(handed_over) == states.SUCCESS, 60, message="SUCCESS")
    assert stack.item(handed_over)["result"]["S"] == "3"
    assert "rejected" not in stack.item(handed_over)


def test_an_unknown_task_nobody_knows_fails_on_its_last_receive(stack, start_worker):
    from tests.faults import side_queue, submit
    from tests.jobs import increment

    queue = side_queue(stack, "unknown", max_receive=3)
    start_worker(concurrency=1, env={**queue.env, "JOBS_EXTRA_MODULES": ""})
    orphan = submit(stack, increment.s(1), queue)
    wait_until(lambda: stack.status(orphan) == states.FAILURE, 90, message="FAILURE")
    item = stack.item(orphan)
    assert item["attempts"]["N"] == "3"
    assert item["error"]["M"]["type"]["S"] == "PoisonMessage"
    wait_until(lambda: stack.queue_counts(queue.dlq_url)[0] == 1, 60, message="in the DLQ")
