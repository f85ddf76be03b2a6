"""The CloudWatch log group the workers write to, with a retention period."""

from __future__ import annotations

from ecs.plan import Call, Context, Step


def find_log_group(logs, name: str) -> dict | None:
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
        for group in page["logGroups"]:
            if group["logGroupName"] == name:
                return group
    return None


def plan_log_group(ctx: Context) -> Step:
    stack, logs = ctx.stack, ctx.clients.logs
    days = stack.options.log_retention_days
    group = find_log_group(logs, stack.log_group)
    if group is None:
        action, detail = "create", f"retention {days} days"
    elif group.get("retentionInDays") != days:
        action, detail = "update", f"retention {group.get('retentionInDays')} -> {days} days"
    else:
        action, detail = "unchanged", ""
    calls = (
        []
        if action == "unchanged"
        else [
            Call(
                "logs",
                "PutRetentionPolicy",
                {"logGroupName": stack.log_group, "retentionInDays": days},
            )
        ]
    )
    if group is None:
        calls.insert(
            0, Call("logs", "CreateLogGroup", {"logGroupName": stack.log_group, "tags": stack.tags})
        )
    return Step("cloudwatch log group", stack.log_group, action, detail, calls)


def plan_delete_log_group(ctx: Context) -> Step:
    found = find_log_group(ctx.clients.logs, ctx.stack.log_group)
    return Step(
        "cloudwatch log group",
        ctx.stack.log_group,
        "delete" if found else "absent",
        instructions=[Call("logs", "DeleteLogGroup", {"logGroupName": ctx.stack.log_group})]
        if found
        else [],
    )
