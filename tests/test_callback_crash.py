"""Completion callbacks are at least once: a worker killed between the job's SUCCESS write
and the callback's enqueue still delivers it (tests/callback_crash.py kills the pool process
at the first enqueue). Its own module, so that no other worker can take the job."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tasks.client import callback
from tests.conftest import wait_until
from tests.test_callbacks import SECRET, WORKER_ENV, Receiver, callback_of, verify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


def test_a_worker_killed_before_the_enqueue_still_delivers(stack, start_worker, receiver, tmp_path):
    """SUCCESS: Celery acknowledges without a rerun, and the main process enqueues it.
    FAILURE: handed back, the message is dropped as a finished job's, and enqueues it."""
    from tasks.debug import add, fail

    start_worker(
        env={
            **WORKER_ENV,
            "JOBS_EXTRA_MODULES": "tests.jobs,tests.callback_crash",
            "CALLBACK_CRASH_DIR": str(tmp_path),
        }
    )
    done = add.apply_async(kwargs={"x": 4, "y": 5}, headers=callback(f"{receiver.url}/ok")).id
    failed = fail.apply_async(
        kwargs={"message": "x"}, headers=callback(f"{receiver.url}/failed")
    ).id
    for job_id, path, status in ((done, "/ok", "SUCCESS"), (failed, "/failed", "FAILURE")):
        wait_until(lambda p=path: receiver.to(p), 60, message=f"the callback to {path}")
        assert (tmp_path / job_id).exists()  # its first run died between write and enqueue
        call = receiver.to(path)[0]
        assert json.loads(call["body"])["status"] == status
        assert verify(SECRET, call["body"], call["headers"]["X-Signature"])
        wait_until(lambda j=job_id: callback_of(stack, j, "delivered"), 15, message="delivered")
