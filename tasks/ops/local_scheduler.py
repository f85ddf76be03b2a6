"""`python -m tasks.ops.local_scheduler`: the jobs' schedules fired locally (`make run`).

On AWS, EventBridge Scheduler fires them and no process of ours runs. Locally this one
small process plays its part from the same definitions (the `schedule=` of each `@job`):
it computes each schedule's fire times in UTC (rate: from when it starts; cron and at:
tasks.jobkit.schedules) and sends the same scheduled message EventBridge would
(tasks.jobkit.schedules.scheduled_body, a fresh execution id, the scheduled time) to the
work queue with SendMessage. One line per firing on stdout, with the job id the worker
will give it. SIGTERM or SIGINT stops it at once.

It also plays EventBridge Scheduler for deferred jobs (tasks.worker.deferral): every
second it looks at the one-time schedules (`at(...)`) of the stack's group on the emulator
(moto keeps them but fires nothing), sends each due one's Input to its target queue, and
deletes it, as `ActionAfterCompletion: DELETE` does on AWS. A send that fails is tried again
on the next look (at least once, like AWS). These fire on the real clock.

`--time-scale N` runs the clock N times faster (rate(1 minute) every second at 60): a knob
for tests and demos only. It refuses to run unless JOBS_TARGET=local.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

log = logging.getLogger("local_scheduler")


def iso(when: datetime) -> str:
    """EventBridge's form (2022-03-22T18:59:43Z), with milliseconds: a scaled clock fires
    more than once a second."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class LocalScheduler:
    def __init__(self, schedules: dict, send, time_scale: float = 1.0, clock=time.time) -> None:
        if time_scale <= 0:
            raise ValueError("--time-scale must be positive")
        self.schedules = schedules
        self.send = send  # send(body) -> None
        self.scale = time_scale
        self.clock = clock
        self.stopped = threading.Event()
        self.fired = 0

    def _real(self, virtual: datetime, start: float) -> float:
        return start + (virtual.timestamp() - start) / self.scale

    def run(self) -> int:
        from tasks.jobkit.schedules import LOCAL_PREFIX, job_id, scheduled_body

        start = self.clock()
        started = datetime.fromtimestamp(start, UTC)
        due = {name: s.next_fire(started, started) for name, s in self.schedules.items()}
        if not self.schedules:
            log.info("no schedules declared; waiting for SIGTERM")
        for name, s in self.schedules.items():
            log.info("schedule %s: %s -> %s %s", name, s.expression, s.task, s.kwargs)
        while not self.stopped.is_set():
            pending = {n: w for n, w in due.items() if w is not None}
            if not pending:
                self.stopped.wait()
                break
            name = min(pending, key=pending.__getitem__)
            wait = self._real(pending[name], start) - self.clock()
            if wait > 0 and self.stopped.wait(min(wait, 3600)):
                break
            if wait > 3600:
                continue
            s = self.schedules[name]
            when = iso(datetime.fromtimestamp(self._real(pending[name], start), UTC))
            schedule = f"{LOCAL_PREFIX}{name}"
            body = scheduled_body(
                s.task,
                s.kwargs,
                schedule=schedule,
                scheduled_time=when,
                execution_id=str(uuid.uuid4()),
                attempt="1",
            )
            try:
                self.send(body)
                self.fired += 1
                log.info(
                    "fired %s -> %s job_id=%s scheduled_time=%s",
                    name,
                    s.task,
                    job_id(schedule, when),
                    when,
                )
            except Exception as exc:  # the emulator restarting: log, keep the schedule
                log.warning("firing %s failed: %s", name, exc)
            due[name] = s.next_fire(pending[name], started)
        log.info("stopped after %d firing(s)", self.fired)
        return 0


class OneTimeSchedules:
    """Fires the due one-time schedules of a group (module doc), on the real clock."""

    def __init__(self, scheduler, sqs, group: str, clock=time.time, interval: float = 1.0):
        self.scheduler = scheduler
        self.sqs = sqs
        self.group = group
        self.clock = clock
        self.interval = interval
        self.known: dict[str, dict | None] = {}  # name -> its definition (None: recurring)
        self.fired = 0

    def _definition(self, name: str) -> dict | None:
        from tasks.ops.one_time_schedules import parse_at

        if name not in self.known:
            found = self.scheduler.get_schedule(GroupName=self.group, Name=name)
            at = parse_at(found.get("ScheduleExpression", ""))
            self.known[name] = None if at is None else {**found, "at": at}
        return self.known[name]

    def fire_due(self) -> int:
        """One look: send every due schedule's Input, then delete it; how many fired."""
        names = []
        pages = self.scheduler.get_paginator("list_schedules").paginate(GroupName=self.group)
        for page in pages:
            names += [s["Name"] for s in page["Schedules"] if s.get("State") == "ENABLED"]
        self.known = {n: d for n, d in self.known.items() if n in names}
        now = datetime.fromtimestamp(self.clock(), UTC)
        fired = 0
        for name in sorted(names):
            schedule = self._definition(name)
            if schedule is None or schedule["at"] > now:
                continue
            self._fire(name, schedule)
            fired += 1
        return fired

    def fire_now(self, name: str) -> bool:
        """Fire one one-time schedule now, whatever its at(): for tests and demos that must
        not wait for it (the message keeps its eta header, so the job still waits for that).
        False if there is no such one-time schedule (fired, deleted, or recurring)."""
        from botocore.exceptions import ClientError

        self.known.pop(name, None)
        try:
            schedule = self._definition(name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise
        if schedule is None:
            return False
        self._fire(name, schedule)
        return True

    def _fire(self, name: str, schedule: dict) -> None:
        """Send the schedule's Input to its target queue, then delete it (as AWS does)."""
        target = schedule["Target"]
        queue = target["Arn"].rsplit(":", 1)[-1]
        url = self.sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        self.sqs.send_message(QueueUrl=url, MessageBody=target["Input"])
        if schedule.get("ActionAfterCompletion") == "DELETE":
            self.scheduler.delete_schedule(GroupName=self.group, Name=name)
        self.known.pop(name, None)
        self.fired += 1
        log.info("fired one-time schedule %s (due %s) -> %s", name, schedule["at"], queue)

    def run(self, stopped: threading.Event) -> None:
        while not stopped.wait(self.interval):
            try:
                self.fire_due()
            except Exception as exc:  # the emulator restarting: look again next second
                log.warning("looking at the one-time schedules failed: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.ops.local_scheduler", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="run the clock this many times faster (tests and demos only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s %(message)s"
    )
    from tasks.ops.clients import queue_url, sqs_client
    from tasks.ops.settings import Settings

    settings = Settings.from_env()
    if not settings.local:
        print(
            "the local scheduler runs with JOBS_TARGET=local only; on AWS, EventBridge "
            "Scheduler fires the schedules (python -m ecs deploy)",
            file=sys.stderr,
        )
        return 2
    from tasks.jobkit.registry import all_schedules  # imports the job modules
    from tasks.ops.clients import scheduler_client

    sqs, url = sqs_client(settings), queue_url(settings)
    scheduler = LocalScheduler(
        all_schedules(),
        lambda body: sqs.send_message(QueueUrl=url, MessageBody=body),
        time_scale=args.time_scale,
    )
    one_time = OneTimeSchedules(scheduler_client(settings), sqs, settings.schedule_group)
    threading.Thread(
        target=one_time.run, args=(scheduler.stopped,), name="one-time", daemon=True
    ).start()

    def stop(signum, frame) -> None:
        scheduler.stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return scheduler.run()


if __name__ == "__main__":
    sys.exit(main())
