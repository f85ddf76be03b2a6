"""The CloudWatch log group the workers write to, with a retention period."""

from __future__ import annotations

from ecs.plan import Context, Step


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

    def run(outputs):
        if group is None:
            logs.create_log_group(logGroupName=stack.log_group, tags=stack.tags)
        logs.put_retention_policy(logGroupName=stack.log_group, retentionInDays=days)
        return None

    return Step("cloudwatch log group", stack.log_group, action, detail,
                run=None if action == "unchanged" else run)
