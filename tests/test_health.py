"""The container health check tells the truth: healthy only while the consumer progresses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tasks.debug import add
from tests.conftest import ROOT, wait_until
from tests.fault_proxy import FaultProxy
from tests.faults import side_queue, statuses, submit


def health(heartbeat: str, max_age: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKER_HEARTBEAT_FILE": heartbeat}
    if max_age is not None:
        env["WORKER_HEARTBEAT_MAX_AGE"] = max_age
    return subprocess.run([sys.executable, "-m", "tasks.worker.health"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def test_the_check_reads_the_age_of_the_last_progress(tmp_path):
    beat = tmp_path / "beat"
    missing = health(str(beat))
    assert missing.returncode == 1 and "has not started consuming" in missing.stdout
    beat.write_text(json.dumps({"kind": "receive", "at": time.time()}))
    fresh = health(str(beat))
    assert fresh.returncode == 0 and "receive" in fresh.stdout
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = health(str(beat))
    assert stale.returncode == 1 and "no progress for 120 s" in stale.stdout


def test_the_check_imports_nothing_heavy():
    # It runs every 30 s in the container: no Celery, kombu, boto3 or jsonschema.
    probe = ("import runpy, sys\n"
             "try:\n    runpy.run_module('tasks.worker.health', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "heavy = [m for m in ('celery', 'kombu', 'boto3', 'botocore', 'jsonschema',"
             " 'billiard') if m in sys.modules]\n"
             "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=30, env={**os.environ,
                                                     "WORKER_HEARTBEAT_FILE": "/nonexistent"})
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


@pytest.mark.integration
@pytest.mark.fault
def test_a_wedged_worker_turns_unhealthy_and_recovers(stack, start_worker):
    # The wedge: every connection to SQS and DynamoDB hangs without an answer. The event
    # loop keeps running (a timer-driven heartbeat would go on saying healthy), but the
    # consumer receives nothing: the check must say so within 60 s.
    queue = side_queue(stack, "wedge")
    with FaultProxy(stack.endpoint) as proxy:
        path = queue.url.split("/", 3)[3]
        env = {**queue.env, "AWS_ENDPOINT_URL": proxy.url,
               "JOBS_QUEUE_URL": f"{proxy.url}/{path}"}
        worker = start_worker(concurrency=1, env=env)
        heartbeat = str(ROOT / "test-output" / f"heartbeat-{worker.name}")
        job = submit(stack, add.s(x=1, y=2), queue)
        wait_until(lambda: statuses(stack, [job])[job] == "SUCCESS", 60, message="first job")
        assert health(heartbeat).returncode == 0

        proxy.mode = "hang"
        wedged_at = time.monotonic()
        wait_until(lambda: health(heartbeat).returncode == 1, 75, interval=2,
                   message="the health check to report the wedged worker")
        assert time.monotonic() - wedged_at <= 60 + 5  # 45 s limit + one long poll + slack
        assert worker.alive()  # it is not dead: only the truth about it changed

        proxy.mode = "pass"
        wait_until(lambda: health(heartbeat).returncode == 0, 60, interval=1,
                   message="the health check to recover once SQS answers again")
        again = submit(stack, add.s(x=2, y=2), queue)
        wait_until(lambda: statuses(stack, [again])[again] == "SUCCESS", 90,
                   message="a job after the wedge")
