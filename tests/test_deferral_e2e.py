"""A job forced through the long path (JOBS_DEFER_AFTER=1) with a real `celery -A tasks worker`
and the local scheduler (`python -m tasks.ops.local_scheduler`), on moto's server.

While it waits, no process of ours holds it: the record says SCHEDULED with its eta, nothing
is visible or in flight in the queue, the worker has not handed it to Celery (no "received"
line), and one one-time schedule waits in the group. At its ETA the local scheduler sends
the schedule's Input (the deferred message, verbatim) and deletes the schedule; the job runs
once, not before its ETA. A 10-day ETA is accepted: its schedule exists with that at(...).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import states

from tasks.app_factory import create_app
from tasks.ops import one_time_schedules as ots
from tasks.ops.clients import scheduler_client
from tasks.ops.settings import Settings
from tests.conftest import OUTPUT, ROOT, wait_until
from tests.faults import received_count, side_queue

pytestmark = pytest.mark.integration


def test_a_deferred_job_waits_in_a_schedule_not_in_a_worker_then_runs_once(stack, start_worker):
    queue = side_queue(stack, "defer")
    group = f"defer-{uuid.uuid4().hex[:8]}"
    env = {**queue.env, "JOBS_DEFER_AFTER": "1", "JOBS_SCHEDULE_GROUP": group}
    settings = Settings.from_env({**stack.env, **env})
    scheduler = scheduler_client(settings)
    ots.ensure_group(settings)
    worker = start_worker(concurrency=1, env=env)
    client = create_app(settings, role="client")

    def schedules() -> list[str]:
        return [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]

    def counts() -> tuple[int, int]:
        return stack.queue_counts(queue.url)

    # delay_seconds=0: no SQS delay, so the worker receives it at once, 8 s before its ETA.
    eta = datetime.now(UTC) + timedelta(seconds=8)
    soon = client.send_task("tasks.debug.add", args=(2, 3), eta=eta, delay_seconds=0)
    far_eta = datetime.now(UTC) + timedelta(days=10)
    far = client.send_task("tasks.debug.add", args=(1, 1), eta=far_eta, delay_seconds=0)

    wait_until(
        lambda: stack.status(soon.id) == "SCHEDULED" and stack.status(far.id) == "SCHEDULED",
        15,
        message="both jobs recorded as waiting",
    )
    names = {ots.schedule_name(soon.id, 0), ots.schedule_name(far.id, 0)}
    wait_until(lambda: counts() == (0, 0), 10, message="both messages acknowledged")
    assert set(schedules()) == names
    made = scheduler.get_schedule(GroupName=group, Name=ots.schedule_name(far.id, 0))
    assert made["ScheduleExpression"] == ots.at_expression(far_eta, ots.precision(settings))
    # The record's eta to the millisecond, as a 202 answer writes one.
    assert stack.item(far.id)["eta"]["S"] == far_eta.isoformat(timespec="milliseconds")

    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / "local-scheduler-deferral.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.ops.local_scheduler"],
            cwd=ROOT,
            env={**stack.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        samples = 0
        while datetime.now(UTC) < eta - timedelta(seconds=1):
            assert stack.status(soon.id) == "SCHEDULED"
            assert counts() == (0, 0)  # nothing visible, nothing in flight
            assert received_count(worker.log(), soon.id) == 0  # no worker holds it
            samples += 1
            time.sleep(0.2)  # sampling the wait, not standing in for a synchronisation
        assert samples >= 3
        assert soon.get(timeout=30) == 5
        wait_until(
            lambda: set(schedules()) == {ots.schedule_name(far.id, 0)},
            10,
            message="the fired schedule deleted",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    item = stack.item(soon.id)
    assert item["status"]["S"] == states.SUCCESS
    assert datetime.fromisoformat(item["started_at"]["S"]) >= eta.replace(
        microsecond=eta.microsecond // 1000 * 1000
    )
    assert received_count(worker.log(), soon.id) == 1
    # The 10-day job still waits; cancelling its schedule is what revoke does.
    assert stack.status(far.id) == "SCHEDULED"
    assert ots.cancel(settings, ots.schedule_name(far.id, 0)) is True
    assert schedules() == []
