"""`python -m tasks.ops.local_scheduler`: the jobs' schedules fired locally (`make run`).

On AWS, EventBridge Scheduler fires them and no process of ours runs. Locally this one
small process plays its part from the same definitions (the `schedule=` of each `@job`):
it computes each schedule's fire times in UTC (rate: from when it starts; cron and at:
tasks.jobkit.schedules) and sends the same scheduled message EventBridge would
(tasks.jobkit.schedules.scheduled_body, a fresh execution id, the scheduled time) to the
work queue with SendMessage. One line per firing on stdout, with the job id the worker
will give it. SIGTERM or SIGINT stops it at once.

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

    sqs, url = sqs_client(settings), queue_url(settings)
    scheduler = LocalScheduler(
        all_schedules(),
        lambda body: sqs.send_message(QueueUrl=url, MessageBody=body),
        time_scale=args.time_scale,
    )

    def stop(signum, frame) -> None:
        scheduler.stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return scheduler.run()


if __name__ == "__main__":
    sys.exit(main())
