"""The same message delivered twice, at the same time, to two different workers: it runs once
(the job's run lease refuses the second start: tasks.results.run_lease)."""

from __future__ import annotations

import threading

import pytest
from celery import states

from tests.conftest import wait_until
from tests.envelopes import capture
from tests.faults import drained, received_count, retarget, side_queue
from tests.jobs import append_line

pytestmark = [pytest.mark.integration, pytest.mark.fault]

ORDER = {None: 0, states.STARTED: 1, "PROGRESS": 1, states.SUCCESS: 2}


class StatusWatch:
    """Samples a job's status on a thread, to catch any step backwards."""

    def __init__(self, stack, job_id: str) -> None:
        self.stack, self.job_id = stack, job_id
        self.seen: list[str | None] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            status = self.stack.status(self.job_id)
            if not self.seen or self.seen[-1] != status:
                self.seen.append(status)
            self.stop.wait(0.05)

    def __enter__(self) -> StatusWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def test_one_message_delivered_twice_concurrently_to_two_workers(stack, start_worker, tmp_path):
    queue = side_queue(stack, "twice")
    out = tmp_path / "effects.txt"
    first = start_worker(concurrency=1, env=queue.env)
    second = start_worker(concurrency=1, env=queue.env)
    job_id, body = capture(stack, append_line.s(path=str(out), line="once", hold=2))
    body = retarget(body, queue.name)

    with StatusWatch(stack, job_id) as watch:
        for _ in range(2):
            stack.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
        wait_until(
            lambda: (
                received_count(first.log(), job_id) == 1
                and received_count(second.log(), job_id) == 1
            ),
            30,
            message="one copy in each worker",
        )
        wait_until(lambda: drained(stack, queue.url), 60, message="both copies consumed")
        wait_until(lambda: watch.seen[-1] == states.SUCCESS, 10, message="SUCCESS")

    assert out.read_text() == "once\n"
    ranks = [ORDER[s] for s in watch.seen]
    assert ranks == sorted(ranks), f"status went backwards: {watch.seen}"
    assert watch.seen[-1] == states.SUCCESS
    item = stack.item(job_id)
    assert item["status"]["S"] == states.SUCCESS and item["attempts"]["N"] == "1"
    # One copy ran. The other's STARTED write was refused by the run lease (or, had it come
    # later, by the SUCCESS record): that job never ran, and its message was acknowledged.
    logs = first.log() + second.log()
    assert logs.count(f"[{job_id}] succeeded") == 1
    dropped = [
        line
        for line in logs.splitlines()
        if f"[{job_id}] is already " in line and "duplicate message dropped" in line
    ]
    assert len(dropped) == 1, dropped
