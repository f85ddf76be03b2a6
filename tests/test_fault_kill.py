"""kill -9 mid-task, and a task that crashes its process on every delivery."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from celery import states

from tasks.debug import add
from tests.conftest import wait_until
from tests.faults import all_terminal, drained, side_queue, statuses, submit
from tests.jobs import append_line, crash

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def pool_children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def started(stack, jobs) -> list[str]:
    return [j for j, s in statuses(stack, jobs).items() if s == states.STARTED]


def submit_effects(stack, queue, out: Path, count: int, hold: float) -> dict[str, str]:
    """`count` guarded side effects (one line each); returns {job id: its line}."""
    jobs = {}
    for n in range(count):
        line = f"effect-{n}"
        jobs[submit(stack, append_line.s(path=str(out), line=line, hold=hold), queue)] = line
    return jobs


def assert_ran_once(stack, jobs: dict[str, str], out: Path, logs: list[str]) -> None:
    assert sorted(out.read_text().splitlines()) == sorted(jobs.values())
    for job in jobs:
        assert stack.status(job) == states.SUCCESS
        # A second SUCCESS write would be refused by the table and logged.
        assert not any(f"job {job} is already finished" in log for log in logs), job
        assert sum(log.count(f"[{job}] succeeded") for log in logs) == 1, job


def test_kill_9_of_pool_processes_mid_task(stack, start_worker, tmp_path):
    queue = side_queue(stack, "killchild")
    out = tmp_path / "effects.txt"
    worker = start_worker(concurrency=2, env=queue.env)
    jobs = submit_effects(stack, queue, out, 6, hold=2)
    in_flight = wait_until(
        lambda: len(started(stack, jobs)) == 2 and started(stack, jobs),
        30,
        message="two jobs in flight",
    )
    for child in pool_children(worker.proc.pid):
        os.kill(child, signal.SIGKILL)

    wait_until(lambda: all_terminal(stack, jobs), 90, message="every job finished")
    assert worker.alive()
    attempts = {j: stack.item(j)["attempts"]["N"] for j in jobs}
    assert {attempts[j] for j in in_flight} == {"2"}, attempts
    assert {a for j, a in attempts.items() if j not in in_flight} == {"1"}, attempts
    assert_ran_once(stack, jobs, out, [worker.log()])
    wait_until(lambda: drained(stack, queue.url), 10, message="queue empty")


def test_kill_9_of_a_whole_worker_mid_task(stack, start_worker, tmp_path):
    """The container is OOM-killed: its messages come back after the visibility timeout."""
    queue = side_queue(stack, "killworker", visibility=4)
    out = tmp_path / "effects.txt"
    first = start_worker(concurrency=2, env=queue.env)
    jobs = submit_effects(stack, queue, out, 4, hold=2)
    in_flight = wait_until(
        lambda: len(started(stack, jobs)) == 2 and started(stack, jobs),
        30,
        message="two jobs in flight",
    )
    first.kill()

    second = start_worker(concurrency=2, env=queue.env)
    wait_until(lambda: all_terminal(stack, jobs), 90, message="every job finished")
    attempts = {j: stack.item(j)["attempts"]["N"] for j in jobs}
    assert {attempts[j] for j in in_flight} == {"2"}, attempts
    assert_ran_once(stack, jobs, out, [first.log(), second.log()])
    wait_until(lambda: drained(stack, queue.url), 10, message="queue empty")


def test_a_task_that_always_crashes_its_process_ends_in_the_dlq_as_failure(stack, start_worker):
    queue = side_queue(stack, "crash", max_receive=3)
    worker = start_worker(concurrency=2, env=queue.env)
    doomed = submit(stack, crash.s(), queue)
    others = [submit(stack, add.s(x=n, y=1), queue) for n in range(6)]

    wait_until(lambda: stack.status(doomed) == states.FAILURE, 60, message="FAILURE recorded")
    item = stack.item(doomed)
    assert item["error"]["M"]["type"]["S"] == "WorkerProcessLost"
    assert "on each of its 3 deliveries" in item["error"]["M"]["message"]["S"]
    assert item["attempts"]["N"] == "3"
    wait_until(lambda: stack.queue_counts(queue.dlq_url)[0] == 1, 30, message="message in DLQ")
    from tasks.ops.dlq import peek

    assert [m.task_id for m in peek(stack.sqs, queue.dlq_url)] == [doomed]

    wait_until(lambda: all_terminal(stack, others), 30, message="other jobs finished")
    assert set(statuses(stack, others).values()) == {states.SUCCESS}
    assert worker.alive()
    assert stack.status(doomed) == states.FAILURE
    wait_until(lambda: drained(stack, queue.url), 10, message="queue empty")
