"""`status` and `logs`: what the stack is doing now."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ecs import alarms, cluster, data
from ecs.rollout import describe_stop
from ecs.stack import Stack
from tasks.ops.provision import LIST_INDEX
from tasks.ops.queue_metrics import oldest_message_age

Echo = Callable[[str], None]
RECENT_JOBS = 10


def parse_since(text: str) -> timedelta:
    """`10m`, `2h`, `30s`, `1d` -> a timedelta."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise ValueError(f"--since {text!r}: use a number and s, m, h or d (e.g. 10m)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def _queue_counts(sqs, name: str) -> tuple[int, int] | None:
    url = data.queue_url(sqs, name)
    if url is None:
        return None
    a = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def oldest_age(cloudwatch, queue: str, now: datetime | None = None) -> str:
    age = oldest_message_age(cloudwatch, queue, now)
    return "n/a" if age is None else f"{age}s"


def recent_jobs(
    dynamodb,
    table: str,
    limit: int = RECENT_JOBS,
    *,
    status: str | None = None,
    since: datetime | None = None,
) -> list[dict]:
    """The newest jobs (of one status, since a time), from the listing index: no Scan."""
    from tasks.results.encoding import iso_utc
    from tasks.results.listing import list_jobs

    return list_jobs(
        status, since=iso_utc(since) if since else None, limit=limit, client=dynamodb, table=table
    ).jobs


def alarm_states(cloudwatch, stack: Stack) -> list[tuple[str, str, str]]:
    """(name, state, reason) of each of the stack's alarms, in a fixed order."""
    names = alarms.alarm_names(stack)
    found = {
        a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    }
    return [
        (n, found[n].get("StateValue", "?"), found[n].get("StateReason", ""))
        if n in found
        else (n, "not deployed", "")
        for n in names
    ]


def recent_failures(ecs, stack: Stack, limit: int = 5) -> list[str]:
    """The service's recently stopped tasks that did not end well (ECS keeps stopped tasks
    for about an hour): a non-zero exit, or a start that failed."""
    arns = ecs.list_tasks(
        cluster=stack.cluster, serviceName=stack.service, desiredStatus="STOPPED", maxResults=100
    )["taskArns"]
    if not arns:
        return []
    out = []
    tasks = ecs.describe_tasks(cluster=stack.cluster, tasks=arns)["tasks"]
    tasks.sort(key=lambda t: str(t.get("stoppedAt", "")), reverse=True)
    for task in tasks:
        codes = [c.get("exitCode") for c in task.get("containers", [])]
        if all(code in (0, None) for code in codes) and task.get("stopCode") != "TaskFailedToStart":
            continue  # a scale-in, a deploy, a Spot reclaim: stopped, and a clean exit
        when = task.get("stoppedAt")
        stamp = f"{when:%H:%M:%S} " if isinstance(when, datetime) else ""
        out.append(
            f"{stamp}{task['taskArn'].rsplit('/', 1)[-1][:12]} "
            f"{task.get('taskDefinitionArn', '').rsplit('/', 1)[-1]}: "
            f"{describe_stop(task)}"
        )
    return out[:limit]


def status(clients, stack: Stack, echo: Echo = print) -> None:
    echo(f"stack {stack.name} in {stack.region}")
    service = cluster.find_service(clients.ecs, stack.cluster, stack.service)
    if service is None:
        echo("service:   not deployed")
    else:
        echo(
            f"service:   desired {service['desiredCount']}, running "
            f"{service['runningCount']}, pending {service['pendingCount']}"
        )
        for d in service.get("deployments", []):
            task_def = d.get("taskDefinition", "").rsplit("/", 1)[-1]
            failed = f", {d['failedTasks']} failed" if d.get("failedTasks") else ""
            echo(
                f"  deployment {d.get('status', '?'):8} {task_def:28} "
                f"running {d.get('runningCount', 0)}/{d.get('desiredCount', 0)}{failed} "
                f"{d.get('rolloutState', '')}".rstrip()
            )
        failures = recent_failures(clients.ecs, stack)
        echo(
            f"failures:  {len(failures)} stopped task(s) in the last hour"
            if failures
            else "failures:  none in the last hour"
        )
        for line in failures:
            echo(f"  {line}")
    echo("alarms:")
    for name, state, reason in alarm_states(clients.cloudwatch, stack):
        echo(f"  {state:17} {name}" + (f"  ({reason})" if state == "ALARM" and reason else ""))
    main = _queue_counts(clients.sqs, stack.queue_name)
    dlq = _queue_counts(clients.sqs, stack.dlq_name)
    if main is None:
        echo("queue:     not deployed")
    else:
        echo(
            f"queue:     {main[0]} visible, {main[1]} in flight, "
            f"{dlq[0] + dlq[1] if dlq else 'n/a'} in the dead-letter queue"
        )
        echo(f"oldest:    {oldest_age(clients.cloudwatch, stack.queue_name)}")
    table = data.describe_table(clients.dynamodb, stack.table_name)
    if table is None:
        echo("jobs:      table not deployed")
        return
    if not any(
        index.get("IndexName") == LIST_INDEX for index in table.get("GlobalSecondaryIndexes") or []
    ):
        echo(f"jobs:      the table has no {LIST_INDEX} index yet: run deploy")
        return
    jobs = recent_jobs(clients.dynamodb, stack.table_name)
    echo(f"jobs:      {len(jobs)} recent" if jobs else "jobs:      none yet")
    for job in jobs:
        echo(
            f"  {job['job_id']:38} {job.get('status', '?'):9} {job.get('task', ''):28} "
            f"{job.get('updated_at', '')}"
        )
    day_ago = datetime.now(UTC) - timedelta(hours=24)
    failed = recent_jobs(clients.dynamodb, stack.table_name, status="FAILURE", since=day_ago)
    echo(
        f"failed:    {len(failed)} job(s) in the last 24 h"
        + (" (the newest shown)" if len(failed) == RECENT_JOBS else "")
        if failed
        else "failed:    no job in the last 24 h"
    )
    for job in failed:
        echo(f"  {job['job_id']:38} {job.get('task', ''):38} {job.get('finished_at', '')}")


def logs(
    clients,
    stack: Stack,
    *,
    since: timedelta,
    follow: bool = False,
    echo: Echo = print,
    poll_seconds: float = 5.0,
    max_polls: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the workers' log events; with follow, keep polling (max_polls bounds it)."""
    start = int((datetime.now(UTC) - since).timestamp() * 1000)
    seen: dict[str, int] = {}  # event id -> timestamp, for the events at `start` only
    printed = 0
    polls = 0
    while True:
        kwargs = {"logGroupName": stack.log_group, "startTime": start}
        for page in clients.logs.get_paginator("filter_log_events").paginate(**kwargs):
            for event in page["events"]:
                if event["eventId"] in seen:
                    continue
                seen[event["eventId"]] = event["timestamp"]
                stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
                echo(
                    f"{stamp:%H:%M:%S} {event['logStreamName'].rsplit('/', 1)[-1][:12]} "
                    f"{event['message'].rstrip()}"
                )
                printed += 1
                start = max(start, event["timestamp"])
        # The next poll starts at the newest timestamp (inclusive): only events from that
        # millisecond can come again, so only they need remembering.
        seen = {k: t for k, t in seen.items() if t >= start}
        polls += 1
        if not follow or (max_polls is not None and polls >= max_polls):
            return printed
        sleep(poll_seconds)
