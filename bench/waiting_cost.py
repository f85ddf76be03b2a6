"""What a job waiting for its ETA costs per hour, by the way it waits (issue 20).

Computed, not measured: each path's requests follow from the code (tasks.worker.visibility's
beat period, SQS's 900 s DelaySeconds, one schedule per deferred job) and are priced with
bench.prices (SQS, DynamoDB, Fargate) and EventBridge Scheduler's list price. The benchmark
report can print `markdown_table()`; `rows()` gives the numbers.

- held: today's path up to 15 min (and up to 11 h before deferral): a worker holds the
  message and extends its visibility, one ChangeMessageVisibilityBatch per beat for up to
  10 held messages, and a worker task must keep running (no scale-in to zero);
- requeue: the alternative we did not choose: a worker receives the message every 15 min
  and sends it again with DelaySeconds=900 (ReceiveMessage, SendMessage, DeleteMessage);
- schedule: what tasks.worker.deferral does: one CreateSchedule (EventBridge Scheduler
  charges invocations, not API calls), one record write (SCHEDULED), one invocation that
  sends the message back (one SendMessage), whatever the wait.
"""

from __future__ import annotations

from bench.prices import DDB_PER_MILLION_WRU, FARGATE_PER_VCPU_HOUR, SQS_PER_MILLION_REQUESTS

# EventBridge Scheduler: $1.00 per million invocations after 14 million free per month
# (us-east-1 list price); CreateSchedule/DeleteSchedule are not charged.
SCHEDULER_PER_MILLION_INVOCATIONS = 1.00
SQS_DELAY_MAX = 900
SECONDS_PER_HOUR = 3600


def _dollars(requests: float, per_million: float) -> float:
    return requests * per_million / 1_000_000


def rows(
    wait_hours: float = 2.0, visibility_timeout: int = 300, worker_vcpu: float = 0.5
) -> list[dict]:
    """One row per path: requests and dollars per waiting hour for one job waiting
    `wait_hours`, what the wait keeps running, the longest wait and the precision."""
    from tasks.worker.visibility import ETA_MARGIN, SQS_MAX_VISIBILITY, heartbeat_interval

    beats = SECONDS_PER_HOUR / heartbeat_interval(visibility_timeout)
    hops = SECONDS_PER_HOUR / SQS_DELAY_MAX
    # Deferral's own calls, once per job: the SCHEDULED write (1 WRU), the invocation, and
    # the SendMessage that brings the message back (CreateSchedule itself is free).
    once = (
        _dollars(1, DDB_PER_MILLION_WRU)
        + _dollars(1, SCHEDULER_PER_MILLION_INVOCATIONS)
        + _dollars(1, SQS_PER_MILLION_REQUESTS)
    )
    return [
        {
            "path": "held by a worker",
            "requests_per_hour": beats,  # alone; a tenth of that with 10 held per beat
            "dollars_per_hour": _dollars(beats, SQS_PER_MILLION_REQUESTS),
            "keeps_running": f"a worker task ({worker_vcpu} vCPU, "
            f"${worker_vcpu * FARGATE_PER_VCPU_HOUR:.4f}/h, shared by what it holds)",
            "longest_wait": f"{(SQS_MAX_VISIBILITY - ETA_MARGIN) / 3600:.0f} h",
            "precision": "to the millisecond (Celery's timer)",
        },
        {
            "path": "re-enqueue every 15 min",
            "requests_per_hour": 3 * hops,
            "dollars_per_hour": _dollars(3 * hops, SQS_PER_MILLION_REQUESTS),
            "keeps_running": "a worker every 15 min (scale-in to zero impossible)",
            "longest_wait": "unbounded (a new message each hop)",
            "precision": "to the second (the last hop's DelaySeconds)",
        },
        {
            "path": "one-time schedule",
            "requests_per_hour": 3 / wait_hours,
            "dollars_per_hour": once / wait_hours,
            "keeps_running": "nothing",
            "longest_wait": "unbounded (at(...) any date)",
            "precision": "within the minute after the ETA (EventBridge's 60 s)",
        },
    ]


def markdown_table(wait_hours: float = 2.0, visibility_timeout: int = 300) -> str:
    lines = [
        f"Cost of one job waiting {wait_hours:g} h (visibility timeout {visibility_timeout} s), "
        "per waiting hour:",
        "",
        "| path | requests/h | $/h | keeps running | longest wait | precision |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows(wait_hours, visibility_timeout):
        lines.append(
            f"| {row['path']} | {row['requests_per_hour']:.2f} | "
            f"{row['dollars_per_hour']:.2e} | {row['keeps_running']} | "
            f"{row['longest_wait']} | {row['precision']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
