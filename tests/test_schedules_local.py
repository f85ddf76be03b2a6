"""A schedule fired by the local scheduler process, run by a real worker, on moto's server.

`python -m tasks.ops.local_scheduler --time-scale 60` fires `rate(1 minute)` every second
(the demo job of `make run`, tasks.demo_schedules); each firing must become its own job,
with the id the scheduler logged, and end SUCCESS; SIGTERM stops the scheduler cleanly.
Then malformed scheduled messages go to the same worker: each is refused with its reason
in the record and ends in the dead-letter queue, and the worker keeps serving. Worker and
scheduler use a queue of their own (tests.faults.side_queue).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from tasks.jobkit.schedules import job_id as firing_id
from tasks.jobkit.schedules import scheduled_body
from tests.conftest import OUTPUT, ROOT, wait_until
from tests.faults import side_queue

pytestmark = pytest.mark.integration
EXTRA = {"JOBS_EXTRA_MODULES": "tasks.demo_schedules"}
FIRED = re.compile(r"fired (\S+) -> (\S+) job_id=(\S+) scheduled_time=(\S+)")


ARN = "arn:aws:scheduler:us-east-1:123456789012:schedule/t1-schedules/tasks.debug.add-0"
GOOD = {
    "schedule": ARN,
    "scheduled_time": "2026-12-01T06:00:00Z",
    "execution_id": "e-1",
    "attempt": "1",
}
# What a hand-edited schedule, or anyone allowed to send to the queue, might send instead.
MALFORMED = [
    {"attempt": 2},
    {"scheduled_time": "2026-02-30T06:00:00Z"},
    {"kwargs": {"bad key": 1}},
    {"extra": "field"},
    {"scheduled": 2},
    {"kwargs": [1, 2]},
    {"scheduled_time": "soon"},
]


def test_a_schedule_firing_three_times_gives_three_jobs_that_succeed(stack, start_worker):
    queue = side_queue(stack, "sched")
    env = {**EXTRA, **queue.env}
    worker = start_worker(env=env)
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / "local-scheduler.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.ops.local_scheduler", "--time-scale", "60"],
            cwd=ROOT,
            env={**stack.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: len(FIRED.findall(log_path.read_text())) >= 3, 30, message="three firings"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    text = log_path.read_text()
    assert code == 0 and "stopped after" in text, text
    fired = FIRED.findall(text)
    ids = [job_id for _, _, job_id, _ in fired]
    assert len(set(ids)) == len(ids) >= 3
    assert {(name, task) for name, task, _, _ in fired} == {
        ("tasks.demo_schedules.heartbeat-0", "tasks.demo_schedules.heartbeat")
    }

    wait_until(
        lambda: all(stack.status(i) == "SUCCESS" for i in ids), 60, message="every firing SUCCESS"
    )
    for _, task, job_id, scheduled_time in fired:
        item = stack.item(job_id)
        assert item["task"]["S"] == task
        # the scheduled time reached the job (self.request.scheduled_time)
        assert json.loads(item["result"]["S"]) == {
            "note": "every minute",
            "scheduled_time": scheduled_time,
        }

    # malformed scheduled messages: refused, recorded, dead-lettered; the worker serves on
    refused = []
    for n, changes in enumerate(MALFORMED):
        fields = json.loads(scheduled_body("tasks.debug.add", {"x": n, "y": 1}, **GOOD))
        fields.update(
            changes, scheduled_time=changes.get("scheduled_time", f"2026-12-01T06:{n:02d}:00Z")
        )
        stack.sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(fields))
        refused.append(firing_id(ARN, fields["scheduled_time"]))
    good = dict(GOOD, scheduled_time="2026-12-01T07:00:00Z")
    stack.sqs.send_message(
        QueueUrl=queue.url, MessageBody=scheduled_body("tasks.debug.add", {"x": 2, "y": 3}, **good)
    )
    good_id = firing_id(ARN, good["scheduled_time"])
    wait_until(lambda: stack.status(good_id) == "SUCCESS", 60, message="the good one runs")
    assert json.loads(stack.item(good_id)["result"]["S"]) == 5
    wait_until(
        lambda: all(stack.status(i) == "FAILURE" for i in refused),
        60,
        message="each malformed one recorded",
    )
    for job_id in refused:
        error = stack.item(job_id)["error"]["M"]
        assert error["type"]["S"] == "PoisonMessage"
        assert "scheduled message" in error["message"]["S"]
    wait_until(
        lambda: stack.queue_counts(queue.dlq_url)[0] == len(MALFORMED),
        90,
        message="malformed ones in the DLQ",
    )
    assert worker.alive()
