"""The jobs' schedules as EventBridge Scheduler schedules: no beat process runs anywhere.

Each `@job(schedule=...)` of the deployed job modules (JOBS_MODULES: what the worker
image registers) becomes one schedule in the stack's schedule group, whose target is the
work queue itself: SQS SendMessage with the scheduled message as Input
(tasks.jobkit.schedules.scheduled_body, context attributes filled in by EventBridge),
failed deliveries to the stack's DLQ, sent with the stack's scheduler role (SendMessage
on those two queues only). A schedule in the group that no job declares any more is
deleted. UpdateSchedule replaces a whole definition, so each is compared with GetSchedule
first and written only when it differs.

The group and the role are made even when no job declares a schedule: the worker defers
jobs due more than 15 minutes ahead to one-time schedules in the same group, sent with the
same role (tasks.worker.deferral). Those (`job-...`, tasks.ops.one_time_schedules) are
the worker's: a deploy leaves them alone, and `destroy` deletes them with the group
(DeleteScheduleGroup deletes every schedule of the group).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from ecs import policies, roles
from ecs.plan import Call, Context, Retry, Step, canonical_json, tag_list
from ecs.retry import role_not_ready
from tasks.ops.one_time_schedules import PREFIX as DEFERRED_PREFIX

ROLE_PROPAGATION_SECONDS = 120.0
# A firing whose SendMessage keeps failing is retried for an hour at most, then its
# dead-letter event goes to the DLQ (AWS's default is 24 hours and 185 attempts; a
# periodic job's next firing is the better retry).
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10}


def deployed_schedules(job_modules: tuple[str, ...] | None = None) -> dict:
    """name -> Schedule, of the job modules the worker image registers (JOBS_MODULES, the
    stack's options; JOBS_EXTRA_MODULES, test and demo jobs, are never on AWS, so their
    schedules are never deployed). Without `job_modules`, those of the registry's app."""
    from tasks.jobkit.registry import all_schedules

    found = all_schedules()  # imports the jobs, hence the worker app
    if job_modules is None:
        from tasks.celery_app import app

        job_modules = app.settings.job_modules
    return {name: s for name, s in found.items() if s.module in job_modules}


def definition(stack, schedule) -> dict:
    """The CreateSchedule / UpdateSchedule request of one schedule."""
    from tasks.jobkit.schedules import scheduled_body

    return {
        "Name": schedule.name,
        "GroupName": stack.schedule_group,
        "Description": f"{stack.name}: {schedule.task}",
        "ScheduleExpression": schedule.expression,
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Target": {
            "Arn": stack.queue_arn,
            "RoleArn": stack.role_arn(stack.scheduler_role),
            "Input": scheduled_body(schedule.task, schedule.kwargs),
            "DeadLetterConfig": {"Arn": stack.dlq_arn},
            "RetryPolicy": dict(RETRY_POLICY),
        },
    }


def differences(current: dict, wanted: dict) -> list[str]:
    """The fields of `wanted` a GetSchedule answer (which has more) does not match."""
    out = [
        k
        for k in wanted
        if k not in ("Name", "GroupName", "Target")
        and canonical_json(current.get(k)) != canonical_json(wanted[k])
    ]
    target = current.get("Target") or {}
    return out + [
        f"Target.{k}"
        for k, v in wanted["Target"].items()
        if canonical_json(target.get(k)) != canonical_json(v)
    ]


def find_group(scheduler, name: str) -> dict | None:
    try:
        return scheduler.get_schedule_group(Name=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def group_schedules(scheduler, group: str) -> list[str]:
    names = []
    for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group):
        names += [s["Name"] for s in page["Schedules"]]
    return sorted(names)


def _get(scheduler, group: str, name: str) -> dict | None:
    try:
        return scheduler.get_schedule(GroupName=group, Name=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def plan_schedules(ctx: Context) -> list[Step]:
    stack, scheduler = ctx.stack, ctx.clients.scheduler
    wanted = deployed_schedules(stack.options.job_modules)
    group = find_group(scheduler, stack.schedule_group)
    existing = group_schedules(scheduler, stack.schedule_group) if group else []
    # Deferred jobs' one-time schedules belong to the worker, not to this plan.
    existing = [name for name in existing if not name.startswith(DEFERRED_PREFIX)]
    # Role and group always: the worker defers long ETAs into this group with this role.
    steps: list[Step] = [
        roles.plan_role(
            ctx,
            stack.scheduler_role,
            policies.SCHEDULER,
            policies.scheduler_policy(stack),
            trust=policies.scheduler_trust(stack),
        ),
        Step(
            "schedule group",
            stack.schedule_group,
            "unchanged" if group else "create",
            "",
            []
            if group
            else [
                Call(
                    "scheduler",
                    "CreateScheduleGroup",
                    {"Name": stack.schedule_group, "Tags": tag_list(stack)},
                )
            ],
        ),
    ]
    for name, schedule in wanted.items():
        steps.append(_plan_one(ctx, schedule, name in existing))
    for name in existing:
        if name not in wanted:
            steps.append(
                Step(
                    "schedule",
                    name,
                    "delete",
                    "no job declares it any more",
                    [_delete(stack.schedule_group, name)],
                )
            )
    return steps


def _delete(group: str, name: str) -> Call:
    return Call("scheduler", "DeleteSchedule", {"GroupName": group, "Name": name})


def _plan_one(ctx: Context, schedule, exists: bool) -> Step:
    stack, scheduler = ctx.stack, ctx.clients.scheduler
    wanted = definition(stack, schedule)
    detail = f"{schedule.expression} -> {schedule.task}"
    current = _get(scheduler, stack.schedule_group, schedule.name) if exists else None
    changed = differences(current, wanted) if current is not None else []
    action = "create" if current is None else "update" if changed else "unchanged"
    if changed:
        detail += f"; {', '.join(changed)} differ"
    # A scheduler role made seconds ago is refused until IAM has propagated it.
    write = Call(
        "scheduler",
        "CreateSchedule" if current is None else "UpdateSchedule",
        wanted,
        retry=Retry(role_not_ready, ROLE_PROPAGATION_SECONDS),
    )
    return Step("schedule", schedule.name, action, detail, [] if action == "unchanged" else [write])


def plan_delete_schedules(ctx: Context) -> list[Step]:
    """First of all, so that nothing fires into a queue that is going away: the group's
    schedules, the group, then their role."""
    stack, scheduler = ctx.stack, ctx.clients.scheduler
    steps = []
    if find_group(scheduler, stack.schedule_group) is None:
        steps.append(Step("schedule group", stack.schedule_group, "absent"))
    else:
        names = group_schedules(scheduler, stack.schedule_group)
        deferred = [n for n in names if n.startswith(DEFERRED_PREFIX)]
        steps += [
            Step("schedule", name, "delete", instructions=[_delete(stack.schedule_group, name)])
            for name in names
            if name not in deferred
        ]
        # Pending deferred jobs (any number) go with the group: DeleteScheduleGroup deletes
        # every schedule in it, so they are counted here rather than deleted one by one.
        steps.append(
            Step(
                "schedule group",
                stack.schedule_group,
                "delete",
                f"with {len(deferred)} deferred job(s) waiting in it" if deferred else "",
                instructions=[
                    Call("scheduler", "DeleteScheduleGroup", {"Name": stack.schedule_group})
                ],
            )
        )
    return [*steps, roles.plan_delete_role(ctx, stack.scheduler_role)]
