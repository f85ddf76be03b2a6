"""SIGTERM: a warm shutdown bounded by a deadline; nothing lost, messages handed back at once."""

from __future__ import annotations

import signal
import time

import pytest
from celery import states

from tasks.debug import add, sleep
from tests.conftest import wait_until
from tests.faults import all_terminal, drained, side_queue, statuses, submit

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def terminate(worker, within: float) -> tuple[int, float]:
    """SIGTERM the worker; returns (exit code, seconds it took), failing past `within`."""
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(within)
    return code, time.monotonic() - began


def test_sigterm_during_a_burst_loses_nothing_and_exits_in_time(stack, start_worker):
    queue = side_queue(stack, "burst")
    deadline = 8
    worker = start_worker(
        concurrency=2, env={**queue.env, "WORKER_SHUTDOWN_DEADLINE": str(deadline)}
    )
    jobs = [submit(stack, sleep.s(seconds=1.5, steps=3), queue) for _ in range(8)]
    wait_until(
        lambda: list(statuses(stack, jobs).values()).count(states.SUCCESS) >= 2,
        60,
        message="the burst under way",
    )

    code, took = terminate(worker, within=deadline + 10)
    assert code == 0 and took < deadline, (code, took, worker.log()[-2000:])
    # Jobs that were running finished; none is left half-done.
    assert not [j for j, s in statuses(stack, jobs).items() if s not in (None, states.SUCCESS)]

    start_worker(concurrency=2, env=queue.env)
    wait_until(lambda: all_terminal(stack, jobs), 60, message="every job finished")
    assert set(statuses(stack, jobs).values()) == {states.SUCCESS}
    wait_until(lambda: drained(stack, queue.url), 10, message="queue empty")
    assert stack.queue_counts(queue.dlq_url) == (0, 0)


def test_a_job_cut_off_by_the_deadline_goes_back_to_the_queue_at_once(stack, start_worker):
    queue = side_queue(stack, "cutoff", visibility=60)
    deadline = 3
    worker = start_worker(
        concurrency=1, env={**queue.env, "WORKER_SHUTDOWN_DEADLINE": str(deadline)}
    )
    job = submit(stack, sleep.s(seconds=40, steps=40), queue)
    wait_until(lambda: stack.status(job) == "PROGRESS", 30, message="job running")

    code, took = terminate(worker, within=deadline + 10)
    assert code == 1 and deadline <= took < deadline + 5, (code, took)
    item = stack.item(job)
    assert item["status"]["S"] == states.RETRY
    assert item["error"]["M"]["type"]["S"] == "ShutdownCutOff"
    assert "returned to the queue" in item["error"]["M"]["message"]["S"]
    # Visible again at once, not after the 60 s visibility timeout.
    wait_until(lambda: stack.queue_counts(queue.url) == (1, 0), 5, message="message visible again")

    start_worker(concurrency=1, env={**queue.env, "WORKER_SHUTDOWN_DEADLINE": "1"})
    wait_until(lambda: stack.status(job) == "PROGRESS", 30, message="job running again")
    assert stack.item(job)["attempts"]["N"] == "2"


def test_prefetched_messages_are_handed_back_at_once(stack, start_worker):
    """A countdown task the worker holds unstarted becomes visible when it exits."""
    queue = side_queue(stack, "prefetch", visibility=60)
    # With stock kombu a handed-back message hides for wait_time_seconds (10 s here).
    worker = start_worker(concurrency=1, env={**queue.env, "JOBS_WAIT_TIME_SECONDS": "10"})
    held = submit(stack, add.s(x=1, y=1).set(countdown=120), queue)
    wait_until(lambda: f"[{held}] received" in worker.log(), 30, message="countdown task held")
    assert stack.queue_counts(queue.url) == (0, 1)

    code, _ = terminate(worker, within=30)
    assert code == 0
    # Well inside the 10 s stock kombu would hide it for.
    wait_until(
        lambda: stack.queue_counts(queue.url) == (1, 0), 4, message="held message visible at once"
    )
    assert stack.status(held) is None
