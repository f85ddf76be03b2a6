"""The container health check tells the truth: healthy only while the consumer progresses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from tasks.debug import add, sleep
from tests.conftest import ROOT, wait_until
from tests.fault_proxy import FaultProxy
from tests.faults import side_queue, statuses, submit


def health(heartbeat: str, max_age: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKER_HEARTBEAT_FILE": heartbeat}
    if max_age is not None:
        env["WORKER_HEARTBEAT_MAX_AGE"] = max_age
    return subprocess.run(
        [sys.executable, "-m", "tasks.worker.health"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


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
    probe = (
        "import runpy, sys\n"
        "try:\n    runpy.run_module('tasks.worker.health', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('celery', 'kombu', 'boto3', 'botocore', 'jsonschema',"
        " 'billiard') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "WORKER_HEARTBEAT_FILE": "/nonexistent"},
    )
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
        env = {**queue.env, "AWS_ENDPOINT_URL": proxy.url, "JOBS_QUEUE_URL": f"{proxy.url}/{path}"}
        worker = start_worker(concurrency=1, env=env)
        heartbeat = str(ROOT / "test-output" / f"heartbeat-{worker.name}")
        job = submit(stack, add.s(x=1, y=2), queue)
        wait_until(lambda: statuses(stack, [job])[job] == "SUCCESS", 60, message="first job")
        assert health(heartbeat).returncode == 0

        proxy.mode = "hang"
        wedged_at = time.monotonic()
        wait_until(
            lambda: health(heartbeat).returncode == 1,
            75,
            interval=2,
            message="the health check to report the wedged worker",
        )
        assert time.monotonic() - wedged_at <= 60 + 5  # 45 s limit + one long poll + slack
        assert worker.alive()  # it is not dead: only the truth about it changed

        proxy.mode = "pass"
        wait_until(
            lambda: health(heartbeat).returncode == 0,
            60,
            interval=1,
            message="the health check to recover once SQS answers again",
        )
        again = submit(stack, add.s(x=2, y=2), queue)
        wait_until(
            lambda: statuses(stack, [again])[again] == "SUCCESS",
            90,
            message="a job after the wedge",
        )


# --- unit tests: the busy pulse and what it requires of the visibility heartbeat ----------


class FakeTimer:
    def __init__(self) -> None:
        self.calls: list = []

    def call_repeatedly(self, interval, fn):
        self.calls.append((interval, fn))
        return SimpleNamespace(cancel=lambda: None)


class Keeper:
    def __init__(self, keeping: bool = True) -> None:
        self.answer = keeping

    def keeping(self) -> bool:
        return self.answer


@pytest.fixture
def pulse(tmp_path, monkeypatch):
    """ProgressMarks started on a fake consumer with 2 pool processes, writing to tmp_path."""
    from tasks.ops.settings import Settings
    from tasks.worker import liveness

    beat = tmp_path / "beat"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(beat))
    monkeypatch.setenv("WORKER_HEARTBEAT_MAX_AGE", "45")
    running: list = []
    monkeypatch.setattr(liveness, "running_requests", lambda: list(running))
    marks = liveness.ProgressMarks(Settings.from_env())
    consumer = SimpleNamespace(timer=FakeTimer(), pool=SimpleNamespace(num_processes=2))
    threads = set(threading.enumerate())
    marks.consumer_started(consumer)
    assert set(threading.enumerate()) <= threads  # no thread of its own: the loop's timer
    marks.keeper = Keeper()

    def tick() -> str | None:
        beat.unlink(missing_ok=True)
        monkeypatch.setattr(liveness, "_last_write", 0.0)  # no 1 s write throttle here
        marks.tick()
        return json.loads(beat.read_text())["kind"] if beat.exists() else None

    yield SimpleNamespace(marks=marks, consumer=consumer, running=running, tick=tick)
    liveness.stop()


def test_the_busy_pulse_is_a_timer_on_the_consumers_event_loop(pulse):
    # The consumer's timer is kombu's hub timer: a wedged loop stops the pulse with it.
    assert pulse.consumer.timer.calls == [(5.0, pulse.marks.tick)]
    from tasks.worker.liveness import pulse_interval

    assert pulse_interval(4) == 1.0 and pulse_interval(45) == 5.0


def test_the_pulse_marks_only_while_every_pool_process_runs_a_job(pulse):
    assert pulse.tick() is None  # idle: the consumer receives, and receives mark
    pulse.running.append(object())
    assert pulse.tick() is None  # a process is free: it must be receiving
    pulse.running.append(object())
    assert pulse.tick() == "busy: 2 jobs running"


def test_the_pulse_stops_once_sqs_no_longer_keeps_the_held_messages(pulse):
    pulse.running.extend([object(), object()])
    pulse.marks.keeper.answer = False
    assert pulse.tick() is None
    pulse.marks.keeper.answer = True
    assert pulse.tick() == "busy: 2 jobs running"


def test_the_visibility_heartbeat_keeps_until_two_beats_in_a_row_go_unconfirmed(monkeypatch):
    from concurrent.futures import Future

    from tasks.ops.settings import Settings
    from tasks.worker import visibility

    step = visibility.VisibilityHeartbeat(Settings.from_env())
    step.interval = 300.0
    futures: list[Future] = []

    def extend(entries):
        futures.append(Future())
        return futures[-1]

    monkeypatch.setattr(visibility, "sqs_io", lambda settings: SimpleNamespace(extend=extend))
    held = [("http://q", "r1", 900)]
    monkeypatch.setattr(step, "entries", lambda: list(held))
    limit = step.interval + visibility.ANSWER_GRACE

    step.beat()  # in flight
    first = time.monotonic()
    assert step.keeping(first + limit - 1)
    futures[-1].set_result(1)  # SQS accepted it
    assert step.keeping(first + 10 * limit)

    step.beat()
    missed = time.monotonic()
    futures[-1].set_result(0)  # SQS refused every entry, or the call failed
    assert step.keeping(missed + limit - 1)  # one miss: the next beat may still make it
    step.beat()
    futures[-1].set_exception(OSError("no answer"))  # the next one missed too
    assert not step.keeping(missed + limit + 1)
    step.beat()
    futures[-1].set_result(1)  # SQS answers again
    assert step.keeping(missed + 10 * limit)

    step.beat()
    hung = time.monotonic()
    assert not step.keeping(hung + limit + 1)  # a call that never ends is no answer
    held.clear()
    step.beat()  # nothing held any more: nothing to keep
    assert step.keeping(hung + 10 * limit)


# A busy worker: both pool processes run jobs several times longer than the max age, on a
# queue whose visibility timeout (900 s) puts the visibility heartbeat 300 s apart.
BUSY_MAX_AGE = 4.0
BUSY_JOB_SECONDS = 14.0


@pytest.mark.integration
@pytest.mark.fault
def test_a_worker_busy_with_long_jobs_stays_healthy_throughout(stack, start_worker):
    # With every process busy the consumer does not receive (its prefetch is full), and no
    # job starts or ends for far longer than the max age: the check must still say healthy,
    # since ECS replaces a task after three failed checks and would kill its long jobs.
    queue = side_queue(stack, "busy", visibility=900)
    jobs = [submit(stack, sleep.s(seconds=BUSY_JOB_SECONDS, steps=2), queue) for _ in range(2)]
    max_age = str(BUSY_MAX_AGE)
    worker = start_worker(concurrency=2, env={**queue.env, "WORKER_HEARTBEAT_MAX_AGE": max_age})
    heartbeat = str(ROOT / "test-output" / f"heartbeat-{worker.name}")

    checks, unhealthy, busy_checks = 0, [], 0
    busy_since = busy_until = 0.0  # when both jobs were first and last seen running
    deadline = time.monotonic() + BUSY_JOB_SECONDS * 2 + 60
    while time.monotonic() < deadline:
        now = statuses(stack, jobs)
        if all(s in ("STARTED", "PROGRESS") for s in now.values()):
            busy_until = time.monotonic()
            busy_since = busy_since or busy_until
            busy_checks += 1
        check = health(heartbeat, max_age)
        checks += 1
        if check.returncode != 0:
            unhealthy.append(check.stdout.strip())
        if all(s == "SUCCESS" for s in now.values()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"jobs not done: {statuses(stack, jobs)}")
    # Both ran at once for well over the max age, checked all along.
    assert busy_until - busy_since > 2 * BUSY_MAX_AGE, "the worker was never busy for long"
    assert busy_checks >= 8
    assert unhealthy == [], f"{len(unhealthy)} of {checks} checks said unhealthy: {unhealthy[:3]}"
