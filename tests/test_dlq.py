"""Showing and redriving the dead-letter queue (`python -m tasks.ops.dlq`)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import states

from tasks.debug import add
from tasks.jobkit.errors import PoisonMessage
from tasks.results.backend import DynamoDBJobBackend
from tests.conftest import ROOT, wait_until
from tests.envelopes import capture

pytestmark = pytest.mark.integration


def test_show_lists_dead_letters_and_redrive_runs_them(stack, start_worker):
    job_id, body = capture(stack, add.s(x=5, y=6))
    stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=body)
    stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody="garbage that is not celery")
    # As the worker would have left it: FAILURE with the reason it was rejected.
    backend = DynamoDBJobBackend(add.app)
    backend.store_result(job_id, PoisonMessage("unknown task during a deploy"), states.FAILURE)

    shown = subprocess.run(
        [sys.executable, "-m", "tasks.ops.dlq", "show"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert job_id in shown.stdout and "tasks.debug.add" in shown.stdout
    assert "(unreadable)" in shown.stdout and "2 message(s)" in shown.stdout

    moved = subprocess.run(
        [sys.executable, "-m", "tasks.ops.dlq", "redrive"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert moved.returncode == 0, moved.stderr
    assert "moved 2 message(s)" in moved.stdout
    assert stack.queue_counts(stack.dlq_url) == (0, 0)

    start_worker(concurrency=1)
    wait_until(lambda: stack.status(job_id) == states.SUCCESS, 60, message="redriven job ran")
    assert stack.item(job_id)["result"]["S"] == "11"
    # The garbage goes back to the DLQ after maxReceiveCount receives.
    wait_until(
        lambda: stack.queue_counts(stack.dlq_url)[0] == 1,
        60,
        interval=0.5,
        message="garbage back in the DLQ",
    )
    stack.drain(stack.dlq_url)
