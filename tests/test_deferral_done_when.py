"""Issue 20's "Done when", with one real worker (`-P solo`), the local scheduler's one-time
firing, moto's server and the shim (API Gateway's templates).

The oracles: Celery's calling guide (an ETA'd task "is guaranteed to be executed at some time
*after* the specified date and time"; `expires`: "the task will not be executed after the
expiration time", a worker drops it as revoked), its tasks guide (`self.retry(countdown=...)`
sends a new message with the same id, due after the countdown), its canvas guide (a chord's
callback runs once every header member has returned); SQS's GetQueueAttributes
(ApproximateNumberOfMessagesNotVisible: "messages that are in flight"); EventBridge
Scheduler's one-time schedules (`at(...)`, ActionAfterCompletion DELETE).

SQS carries no `celery inspect reserved/active`: the worker's held requests are read in its
own process by the test-only job tests.deferral_jobs.held_requests (celery.worker.state, the
data `inspect` would answer from).

Two groups of cases share the worker (JOBS_DEFER_AFTER=2, so anything due more than 2 s
ahead on receipt is deferred):
* two hours and ten days ahead: recorded SCHEDULED, held by nothing, cancelled before;
* a few seconds ahead, sent without DelaySeconds so that the worker defers them (the long
  path forced): run once, not before the eta; `expires` before the eta; a retry; a chord.
"""

from __future__ import annotations

import dataclasses
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery import chord, states

from tasks.ops import one_time_schedules as ots
from tasks.ops.local_scheduler import OneTimeSchedules
from tests.conftest import launch_worker, wait_until
from tests.faults import received_count, side_queue

pytestmark = pytest.mark.integration

DEFER_AFTER = 2  # seconds: the long path forced for delays of a few seconds
SOON = 8  # seconds ahead for the cases that run (deferred well before, on a loaded machine too)


@dataclasses.dataclass
class Rig:
    stack: object
    settings: object
    client: object
    shim: object
    worker: object
    queue_url: str
    scheduler: object
    firing: OneTimeSchedules

    def schedules(self) -> dict[str, str]:
        """name -> ScheduleExpression of the group's schedules."""
        found = {}
        pages = self.scheduler.get_paginator("list_schedules")
        for page in pages.paginate(GroupName=self.settings.schedule_group):
            for s in page["Schedules"]:
                got = self.scheduler.get_schedule(
                    GroupName=self.settings.schedule_group, Name=s["Name"]
                )
                found[s["Name"]] = got["ScheduleExpression"]
        return found

    def in_flight(self) -> tuple[int, int]:
        """(visible, in flight) messages of the worker's queue."""
        return self.stack.queue_counts(self.queue_url)

    def held_requests(self) -> list[str]:
        """The jobs the worker holds (reserved, eta-scheduled or running), asked in its own
        process once every other message is acknowledged."""
        wait_until(lambda: self.in_flight() == (0, 0), 30, message="nothing in the queue")
        held = self.client.send_task("tests.deferral_jobs.held_requests").get(timeout=40)
        wait_until(lambda: self.in_flight() == (0, 0), 30, message="the probe acknowledged")
        return held

    def status(self, job_id: str) -> str | None:
        return self.stack.status(job_id)


@pytest.fixture(scope="module")
def rig(stack) -> Iterator[Rig]:
    from api_shim.app import create_app as create_shim
    from tasks.app_factory import create_app
    from tasks.ops.clients import scheduler_client
    from tasks.ops.settings import Settings

    queue = side_queue(stack, "done-when")
    env = {
        **queue.env,
        "JOBS_DEFER_AFTER": str(DEFER_AFTER),
        "JOBS_SCHEDULE_GROUP": f"done-when-{uuid.uuid4().hex[:8]}",
        "JOBS_EXTRA_MODULES": "tests.jobs,tests.deferral_jobs",
    }
    settings = Settings.from_env({**stack.env, **env})
    ots.ensure_group(settings)
    scheduler = scheduler_client(settings)
    # The local scheduler's one-time firing (what `make run` runs), in a thread of this test.
    firing = OneTimeSchedules(scheduler, stack.sqs, settings.schedule_group, interval=0.2)
    stopped = threading.Event()
    looker = threading.Thread(target=firing.run, args=(stopped,), daemon=True)
    looker.start()
    worker = launch_worker(stack, "donewhen", concurrency=1, pool="solo", env=env)
    try:
        yield Rig(
            stack,
            settings,
            create_app(settings, role="client"),
            create_shim(dataclasses.replace(settings, api_keys=())).test_client(),
            worker,
            queue.url,
            scheduler,
            firing,
        )
    finally:
        stopped.set()
        worker.close()
        looker.join(5)


def listed(rig: Rig, status: str) -> set[str]:
    """Every job id GET /jobs?status= lists (following `next`)."""
    ids: set[str] = set()
    cursor = None
    for _ in range(100):
        query = {"status": status, **({"cursor": cursor} if cursor else {})}
        answer = rig.shim.get(f"/jobs?{urllib.parse.urlencode(query)}")
        assert answer.status_code == 200, answer.get_json()
        ids |= {job["job_id"] for job in answer.get_json()["jobs"]}
        cursor = answer.get_json()["next"]
        if cursor is None:
            return ids
    raise AssertionError("next never ended")


def to_ms(moment: datetime) -> datetime:
    """The record's and the 202's eta carry milliseconds (tasks.submit.sqs_delay.eta_text)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def at_of(rig: Rig, eta: datetime) -> str:
    """The at() of a recorded eta. The schedule was made from the message's eta, which the
    record keeps to the millisecond: half a millisecond on, so that an eta truncated onto a
    whole second rounds up as the message's did."""
    return ots.at_expression(eta + timedelta(microseconds=500), ots.precision(rig.settings))


def test_two_hours_and_ten_days_wait_as_scheduled_hold_nothing_and_cancel(rig):
    """`add.apply_async((2, 3), countdown=7200)`, a POST with `X-Countdown: 7200` and a
    10-day ETA: SCHEDULED with their eta (record, GET /jobs/{id}, the listing), nothing
    visible or in flight, nothing held by the worker, one schedule each at its at(); then
    cancelled: revoke() deletes the schedule; DELETE /jobs/{id} records REVOKED, and the
    schedule it leaves, fired now, is dropped by the worker."""
    before = datetime.now(UTC)
    python = rig.client.signature("tasks.debug.add", args=(2, 3)).apply_async(countdown=7200)
    answer = rig.shim.post(
        "/tasks/tasks.debug.add", json={"x": 2, "y": 3}, headers={"X-Countdown": "7200"}
    )
    assert answer.status_code == 202, answer.get_json()
    posted = answer.get_json()["job_id"]
    ten_days = datetime.now(UTC) + timedelta(days=10)
    far = rig.client.send_task("tasks.debug.add", args=(1, 1), eta=ten_days)
    jobs = [python.id, posted, far.id]
    wait_until(lambda: all(rig.status(j) == "SCHEDULED" for j in jobs), 40, message="all SCHEDULED")
    etas = {j: datetime.fromisoformat(rig.stack.item(j)["eta"]["S"]) for j in jobs}
    for job in (python.id, posted):
        assert to_ms(before + timedelta(seconds=7200)) <= etas[job]
        assert etas[job] <= datetime.now(UTC) + timedelta(seconds=7200)
    assert etas[far.id] == to_ms(ten_days)
    assert etas[posted] == datetime.fromisoformat(answer.get_json()["eta"])
    for job in jobs:  # GET /jobs/{id} shows when it will run
        shown = rig.shim.get(f"/jobs/{job}").get_json()
        assert shown["status"] == "SCHEDULED"
        assert datetime.fromisoformat(shown["eta"]) == etas[job]
    assert set(jobs) <= listed(rig, "SCHEDULED")
    # Held by nothing: acknowledged once recorded (no message visible or in flight), no
    # request in the worker.
    wait_until(lambda: rig.in_flight() == (0, 0), 30, message="the three acknowledged")
    assert rig.held_requests() == []
    assert all(received_count(rig.worker.log(), j) == 0 for j in jobs)
    names = {j: ots.schedule_name(j, 0) for j in jobs}
    assert rig.schedules() == {names[j]: at_of(rig, etas[j]) for j in jobs}

    # Fired two hours early (as a stray firing would), the message still carries its eta:
    # the worker defers it again, and nothing runs.
    checker = OneTimeSchedules(rig.scheduler, rig.stack.sqs, rig.settings.schedule_group)
    assert checker.fire_now(names[python.id]) is True
    again = f"by schedule {names[python.id]}"
    wait_until(
        lambda: rig.worker.log().count(again) == 2, 15, message="deferred again when fired early"
    )
    wait_until(lambda: rig.in_flight() == (0, 0), 30, message="the early firing acknowledged")
    assert rig.schedules() == {names[j]: at_of(rig, etas[j]) for j in jobs}
    assert rig.status(python.id) == "SCHEDULED"
    assert received_count(rig.worker.log(), python.id) == 0

    # Cancelled before: revoke() records REVOKED and deletes the schedule.
    python.revoke()
    far.revoke()
    assert rig.status(python.id) == rig.status(far.id) == states.REVOKED
    assert rig.schedules() == {names[posted]: at_of(rig, etas[posted])}
    # DELETE /jobs/{id} (API Gateway's UpdateItem) cannot delete the schedule: it fires,
    # here at once, and the worker drops what it brings.
    deleted = rig.shim.delete(f"/jobs/{posted}")
    assert deleted.status_code == 200, deleted.get_json()
    assert rig.status(posted) == states.REVOKED
    assert checker.fire_now(names[posted]) is True
    wait_until(
        lambda: f"job {posted}: not waiting any more" in rig.worker.log(),
        15,
        message="the worker dropped the fired message",
    )
    wait_until(lambda: rig.in_flight() == (0, 0), 30, message="the fired message acknowledged")
    assert rig.schedules() == {}
    item = rig.stack.item(posted)
    assert item["status"]["S"] == states.REVOKED and "started_at" not in item
    assert received_count(rig.worker.log(), posted) == 0


def test_forced_through_the_long_path_a_job_runs_once_and_never_before_its_eta(rig):
    """Due a few seconds ahead, sent without DelaySeconds: the worker defers each to a
    schedule. An add runs once, not before its eta; one whose `expires` comes before its eta
    is dropped as REVOKED when its schedule fires; `self.retry(countdown=...)` waits
    SCHEDULED with retries=1 and then runs once; a chord whose header member waits still
    completes; a retry an hour ahead waits SCHEDULED (retries=1) and holds nothing."""
    add = rig.client.signature("tasks.debug.add")
    eta = datetime.now(UTC) + timedelta(seconds=SOON)
    once = add.clone(args=(2, 3)).apply_async(eta=eta, DelaySeconds=0)
    expired = add.clone(args=(1, 2)).apply_async(
        eta=eta, expires=eta - timedelta(seconds=SOON / 2), DelaySeconds=0
    )
    retried = rig.client.send_task(
        "tests.deferral_jobs.retry_later", kwargs={"countdown": SOON, "sqs_delay": False}
    )
    hour = rig.client.send_task("tests.deferral_jobs.retry_later", kwargs={"countdown": 3600})
    header = [add.clone(args=(1, 2)).set(eta=eta, DelaySeconds=0), add.clone(args=(3, 4))]
    summed = chord(header)(rig.client.signature("tests.jobs.total"))
    late_member = summed.parent.results[0].id

    waiting = [once.id, expired.id, retried.id, hour.id, late_member]
    wait_until(
        lambda: all(rig.status(j) == "SCHEDULED" for j in waiting),
        SOON + 1,
        interval=0.05,
        message="all deferred before their eta",
    )
    for job in (retried.id, hour.id):
        assert rig.stack.item(job)["retries"]["N"] == "1"
    assert received_count(rig.worker.log(), once.id) == 0

    assert once.get(timeout=40) == 5
    assert summed.get(timeout=40) == 10
    assert retried.get(timeout=40) == 1
    wait_until(lambda: rig.status(expired.id) == states.REVOKED, 30, message="expired dropped")

    for job in (once.id, late_member):
        item = rig.stack.item(job)
        assert datetime.fromisoformat(item["started_at"]["S"]) >= eta.replace(
            microsecond=eta.microsecond // 1000 * 1000
        )
        assert received_count(rig.worker.log(), job) == 1
    assert "started_at" not in rig.stack.item(expired.id)
    assert received_count(rig.worker.log(), retried.id) == 2  # the first try, the retry

    # The hour-long retry holds nothing while it waits, in one schedule named for retry 1.
    assert rig.status(hour.id) == "SCHEDULED"
    assert rig.held_requests() == []
    assert set(rig.schedules()) == {ots.schedule_name(hour.id, 1)}
    hour.revoke()
    assert rig.status(hour.id) == states.REVOKED
    assert rig.schedules() == {}
