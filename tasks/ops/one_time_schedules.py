"""One-time EventBridge Scheduler schedules that hold a deferred job until its ETA.

For H3 (tasks.results, revoke): the interface agreed for issue 20, adapted to
tasks.ops.clients (clients are made from Settings; pass `scheduler=` to use another):

    schedule_name(job_id, retries) -> str
    create(settings, *, name, at, body, scheduler=None) -> bool   # False: it already existed
    cancel(settings, name, *, scheduler=None) -> bool             # False: not found (fired,
                                                                  #   or never made)

A deferred job's message (tasks.worker.deferral) becomes the Input of a schedule
`at(<its ETA>)` in the stack's group, whose SQS target is the work queue: when it fires,
EventBridge Scheduler sends the Input, verbatim, as the body of a new message (a templated
SQS target sends Input as MessageBody), so the worker receives the very message it deferred,
its `eta` header now due. `ActionAfterCompletion: DELETE` removes the schedule once it has
fired; failed deliveries are retried for an hour and then go to the DLQ, as the recurring
schedules' do (ecs.schedules).

The name is derived from the job (its id and retry count), so a message delivered twice
makes the same CreateSchedule, which EventBridge refuses with ConflictException: already
deferred. At-least-once firing is the worker's business: the record's conditional writes
and the run lease make a second delivery run nothing twice.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tasks.ops.clients import scheduler_client
from tasks.ops.settings import Settings

PREFIX = "job-"  # ecs.schedules leaves schedules so named alone (they are not declared jobs)
# CreateSchedule's Name: 1 to 64 of [0-9a-zA-Z-_.].
NAME_CHARS = re.compile(r"^[0-9A-Za-z_.-]+$")
MAX_NAME = 64
# Retried for an hour, then the dead-letter event goes to the DLQ (as ecs.schedules).
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10}
# The body comes from SQS and goes back to SQS: at most SQS's message size. CreateSchedule's
# API model gives Target.Input no maximum; refuse anything larger than the queue could hold.
MAX_INPUT_BYTES = 1_048_576
# "All schedule types on EventBridge Scheduler invoke their targets with 60 second precision":
# at 1:00 means between 1:00:00 and 1:00:59 (its user guide, Schedule types).
AT_PRECISION = 60


def schedule_name(job_id: str, retries: int = 0) -> str:
    """`job-<job id>-<retries>`; a job id that does not fit a schedule's name (64 characters
    of [0-9a-zA-Z-_.]) is replaced by its SHA-256, so the name is still the job's own."""
    suffix = f"-{int(retries)}"
    room = MAX_NAME - len(PREFIX) - len(suffix)
    key = job_id if NAME_CHARS.match(job_id or "") and len(job_id) <= room else None
    if key is None:
        key = "h" + hashlib.sha256(job_id.encode()).hexdigest()[: room - 1]
    return f"{PREFIX}{key}{suffix}"


def at_expression(when: datetime, precision: int = AT_PRECISION) -> str:
    """`at(yyyy-mm-ddThh:mm:ss)` in UTC, rounded up to a whole `precision` seconds: EventBridge
    Scheduler fires within the minute of its time, so rounding up to the minute means the job
    never arrives before its ETA (and is never deferred twice)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    epoch = when.timestamp()
    whole = datetime.fromtimestamp(math.ceil(epoch / precision) * precision, UTC)
    return f"at({whole.strftime('%Y-%m-%dT%H:%M:%S')})"


def precision(settings: Settings) -> int:
    """Seconds of the at() rounding: EventBridge's minute, or the local scheduler's second."""
    return 1 if settings.local else AT_PRECISION


def parse_at(expression: str) -> datetime | None:
    """The UTC time of an `at(...)` expression, else None (rate and cron schedules)."""
    found = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", expression or "")
    return datetime.fromisoformat(found.group(1)).replace(tzinfo=UTC) if found else None


def _arn_parts(role_arn: str) -> tuple[str, str]:
    """(partition, account) of an IAM role ARN (arn:<partition>:iam::<account>:role/...)."""
    parts = role_arn.split(":")
    return parts[1], parts[4]


def queue_arn(settings: Settings, queue_name: str) -> str:
    """A queue of this stack, in the scheduler role's partition and account."""
    partition, account = _arn_parts(settings.scheduler_role_arn or "")
    return f"arn:{partition}:sqs:{settings.region}:{account}:{queue_name}"


def enabled(settings: Settings) -> bool:
    """Deferral needs the scheduler role the schedules send with (ecs deploy sets it)."""
    return bool(settings.scheduler_role_arn)


def request(settings: Settings, *, name: str, at: datetime, body: str) -> dict[str, Any]:
    """The CreateSchedule request of one deferred job."""
    return {
        "Name": name,
        "GroupName": settings.schedule_group,
        "Description": "a deferred job (tasks.worker.deferral)",
        "ScheduleExpression": at_expression(at, precision(settings)),
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "ActionAfterCompletion": "DELETE",
        "Target": {
            "Arn": queue_arn(settings, settings.queue_name),
            "RoleArn": settings.scheduler_role_arn,
            "Input": body,
            "DeadLetterConfig": {"Arn": queue_arn(settings, settings.dlq_name)},
            "RetryPolicy": dict(RETRY_POLICY),
        },
    }


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def create(
    settings: Settings, *, name: str, at: datetime, body: str, scheduler: Any = None
) -> bool:
    """Create the schedule; False if one of that name already exists (deferred already).
    Any other error propagates (throttling and 5xx after the client's own retries)."""
    if len(body.encode()) > MAX_INPUT_BYTES:
        raise ValueError(f"a body of {len(body.encode())} bytes is over {MAX_INPUT_BYTES}")
    client = scheduler or scheduler_client(settings)
    try:
        client.create_schedule(**request(settings, name=name, at=at, body=body))
    except ClientError as exc:
        if _code(exc) == "ConflictException":
            return False
        raise
    return True


def cancel(settings: Settings, name: str, *, scheduler: Any = None) -> bool:
    """Delete the schedule; False if there is none (it fired already, or was never made)."""
    client = scheduler or scheduler_client(settings)
    try:
        client.delete_schedule(GroupName=settings.schedule_group, Name=name)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def ensure_group(settings: Settings, *, scheduler: Any = None) -> bool:
    """Make the stack's schedule group if it is missing (locally: `ecs deploy` makes it on
    AWS); True if it was made."""
    client = scheduler or scheduler_client(settings)
    try:
        client.get_schedule_group(Name=settings.schedule_group)
        return False
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    try:
        client.create_schedule_group(Name=settings.schedule_group)
    except ClientError as exc:
        if _code(exc) != "ConflictException":  # made meanwhile
            raise
        return False
    return True
