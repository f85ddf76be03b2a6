"""CloudWatch alarms an operator watches: a job in the dead-letter queue, and a job waiting
too long in the work queue. Named and tagged from the stack; `status` shows their state.

Both read SQS's own metrics (published every minute for a queue in use), so no code of ours
needs to run for them to fire. `--alarm-topic ARN` makes them notify an SNS topic.
"""

from __future__ import annotations

from ecs.plan import Call, Context, Step, tag_list
from ecs.scaling import find_alarm, subset


def _queue_metric(queue: str, metric: str) -> dict:
    return {
        "Namespace": "AWS/SQS",
        "MetricName": metric,
        "Dimensions": [{"Name": "QueueName", "Value": queue}],
    }


def _actions(stack) -> dict:
    topic = stack.options.alarm_topic
    return {
        "ActionsEnabled": True,
        "AlarmActions": [topic] if topic else [],
        "OKActions": [topic] if topic else [],
    }


def dead_letter_alarm(stack) -> dict:
    return {
        "AlarmName": stack.dlq_alarm,
        "AlarmDescription": f"{stack.name}: a job is in the dead-letter queue {stack.dlq_name} "
        f"(python -m ecs dlq --stack {stack.name} lists them)",
        **_queue_metric(stack.dlq_name, "ApproximateNumberOfMessagesVisible"),
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 0.0,
        "ComparisonOperator": "GreaterThanThreshold",
        # No data: the queue is idle (SQS stops publishing after six idle hours), so empty.
        "TreatMissingData": "notBreaching",
        **_actions(stack),
    }


def oldest_message_alarm(stack) -> dict:
    age = stack.options.max_message_age
    return {
        "AlarmName": stack.age_alarm,
        "AlarmDescription": f"{stack.name}: a job has waited more than {age} s in "
        f"{stack.queue_name} (workers down, or too few)",
        **_queue_metric(stack.queue_name, "ApproximateAgeOfOldestMessage"),
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": float(age),
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        **_actions(stack),
    }


def definitions(stack) -> list[dict]:
    return [dead_letter_alarm(stack), oldest_message_alarm(stack)]


def alarm_names(stack) -> list[str]:
    """Every alarm of the stack, the autoscaling one included."""
    return [stack.dlq_alarm, stack.age_alarm, stack.alarm]


def _plan_alarm(ctx: Context, wanted: dict, detail: str) -> Step:
    stack, cloudwatch = ctx.stack, ctx.clients.cloudwatch
    name = wanted["AlarmName"]
    found = find_alarm(cloudwatch, name)
    compared = {k: v for k, v in wanted.items() if k != "AlarmName"}
    action = "create" if found is None else "unchanged" if subset(found, compared) else "update"

    # Tags count on creation only; put_metric_alarm ignores them on an update.
    put = Call("cloudwatch", "PutMetricAlarm", {**wanted, "Tags": tag_list(stack)})
    return Step("cloudwatch alarm", name, action, detail, [] if action == "unchanged" else [put])


def plan_alarms(ctx: Context) -> list[Step]:
    stack = ctx.stack
    if stack.options.max_message_age <= 0:
        raise ValueError("--max-message-age must be a positive number of seconds")
    return [
        _plan_alarm(ctx, dead_letter_alarm(stack), "dead letters > 0"),
        _plan_alarm(
            ctx, oldest_message_alarm(stack), f"oldest message > {stack.options.max_message_age}s"
        ),
    ]


def plan_delete_alarms(ctx: Context) -> list[Step]:
    """The operator's alarms (the autoscaling one goes with the scaling steps)."""
    steps = []
    for wanted in definitions(ctx.stack):
        name = wanted["AlarmName"]
        found = find_alarm(ctx.clients.cloudwatch, name)
        steps.append(
            Step(
                "cloudwatch alarm",
                name,
                "delete" if found else "absent",
                instructions=[Call("cloudwatch", "DeleteAlarms", {"AlarmNames": [name]})]
                if found
                else [],
            )
        )
    return steps
