"""Application Auto Scaling of the service on the queue's backlog.

Target tracking keeps backlog per task = visible messages / running tasks near
acceptable latency / seconds per job. It cannot start the first task (capacity 0 times
anything is 0), so an alarm on "messages waiting and no task running" drives a step policy
that adds one when messages wait and no task is wanted.
"""

from __future__ import annotations

from ecs.plan import Call, Context, Ref, Step, tag_list

NAMESPACE = "ecs"
DIMENSION = "ecs:service:DesiredCount"


def _visible(stack) -> dict:
    return {
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": stack.queue_name}],
    }


def _running(stack, metric: str = "RunningTaskCount") -> dict:
    return {
        "Namespace": "ECS/ContainerInsights",
        "MetricName": metric,
        "Dimensions": [
            {"Name": "ClusterName", "Value": stack.cluster},
            {"Name": "ServiceName", "Value": stack.service},
        ],
    }


def target_tracking_configuration(stack) -> dict:
    return {
        "TargetValue": stack.options.backlog_target(),
        "CustomizedMetricSpecification": {
            "Metrics": [
                {
                    "Id": "m1",
                    "ReturnData": False,
                    "Label": "visible messages",
                    "MetricStat": {"Metric": _visible(stack), "Stat": "Sum"},
                },
                {
                    "Id": "m2",
                    "ReturnData": False,
                    "Label": "running tasks",
                    "MetricStat": {"Metric": _running(stack), "Stat": "Average"},
                },
                {
                    "Id": "e1",
                    "ReturnData": True,
                    "Label": "backlog per task",
                    "Expression": "m1 / m2",
                },
            ]
        },
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 300,
    }


def step_configuration() -> dict:
    return {
        "AdjustmentType": "ChangeInCapacity",
        "Cooldown": 60,
        "MetricAggregationType": "Maximum",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
    }


def alarm_definition(stack, policy_arn: str) -> dict:
    return {
        "AlarmName": stack.alarm,
        "AlarmDescription": f"{stack.name}: jobs are waiting and no worker is running",
        "ActionsEnabled": True,
        "AlarmActions": [policy_arn],
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "Metrics": [
            {
                "Id": "m1",
                "ReturnData": False,
                "MetricStat": {"Metric": _visible(stack), "Period": 60, "Stat": "Maximum"},
            },
            # Desired rather than running: once a task is asked for, starting it takes a
            # minute, and the alarm must not keep adding tasks meanwhile.
            {
                "Id": "m2",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": _running(stack, "DesiredTaskCount"),
                    "Period": 60,
                    "Stat": "Maximum",
                },
            },
            {
                "Id": "e1",
                "ReturnData": True,
                "Label": "waiting with no worker",
                "Expression": "IF(m1 > 0 AND FILL(m2, 0) == 0, 1, 0)",
            },
        ],
    }


def find_target(aas, stack) -> dict | None:
    found = aas.describe_scalable_targets(
        ServiceNamespace=NAMESPACE,
        ResourceIds=[stack.scaling_resource_id],
        ScalableDimension=DIMENSION,
    )["ScalableTargets"]
    return found[0] if found else None


def find_policies(aas, stack) -> dict[str, dict]:
    found = aas.describe_scaling_policies(
        ServiceNamespace=NAMESPACE,
        ResourceId=stack.scaling_resource_id,
        ScalableDimension=DIMENSION,
    )["ScalingPolicies"]
    return {p["PolicyName"]: p for p in found}


def find_alarm(cloudwatch, name: str) -> dict | None:
    found = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found[0] if found else None


def subset(current, desired) -> bool:
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            subset(current.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(subset(c, d) for c, d in zip(current, desired, strict=True))
        )
    if isinstance(desired, float | int) and isinstance(current, float | int):
        return float(current) == float(desired)
    return current == desired


def plan_scaling(ctx: Context) -> list[Step]:
    stack = ctx.stack
    aas, cloudwatch = ctx.clients.application_autoscaling, ctx.clients.cloudwatch
    o = stack.options
    if o.min_tasks < 0 or o.max_tasks < max(1, o.min_tasks):
        raise ValueError("need 0 <= --min-tasks <= --max-tasks and --max-tasks >= 1")
    target = find_target(aas, stack)
    steps = []
    if target is None:
        action, detail = "create", f"{o.min_tasks}..{o.max_tasks} tasks"
    elif (target["MinCapacity"], target["MaxCapacity"]) != (o.min_tasks, o.max_tasks):
        action, detail = "update", f"{o.min_tasks}..{o.max_tasks} tasks"
    else:
        action, detail = "unchanged", ""

    scalable = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": stack.scaling_resource_id,
        "ScalableDimension": DIMENSION,
    }
    steps.append(
        Step(
            "scalable target",
            stack.scaling_resource_id,
            action,
            detail,
            []
            if action == "unchanged"
            else [
                Call(
                    "application-autoscaling",
                    "RegisterScalableTarget",
                    {
                        **scalable,
                        "MinCapacity": o.min_tasks,
                        "MaxCapacity": o.max_tasks,
                        "Tags": stack.tags if target is None else {},
                    },
                )
            ],
        )
    )

    existing = find_policies(aas, stack) if target is not None else {}
    tracking = target_tracking_configuration(stack)
    action = _policy_action(
        existing.get(stack.target_policy), "TargetTrackingScalingPolicyConfiguration", tracking
    )
    steps.append(
        Step(
            "target tracking policy",
            stack.target_policy,
            action,
            f"backlog per task {tracking['TargetValue']:g}",
            []
            if action == "unchanged"
            else [
                Call(
                    "application-autoscaling",
                    "PutScalingPolicy",
                    {
                        "PolicyName": stack.target_policy,
                        **scalable,
                        "PolicyType": "TargetTrackingScaling",
                        "TargetTrackingScalingPolicyConfiguration": tracking,
                    },
                )
            ],
        )
    )

    step_cfg = step_configuration()
    have = existing.get(stack.step_policy)
    action = _policy_action(have, "StepScalingPolicyConfiguration", step_cfg)
    known = {"step_policy_arn": have["PolicyARN"]} if have else {}
    steps.append(
        Step(
            "step scaling policy",
            stack.step_policy,
            action,
            "from zero",
            []
            if action == "unchanged"
            else [
                Call(
                    "application-autoscaling",
                    "PutScalingPolicy",
                    {
                        "PolicyName": stack.step_policy,
                        **scalable,
                        "PolicyType": "StepScaling",
                        "StepScalingPolicyConfiguration": step_cfg,
                    },
                    record={"step_policy_arn": "PolicyARN"},
                )
            ],
            outputs=known,
        )
    )

    policy_changes = action != "unchanged"
    alarm = find_alarm(cloudwatch, stack.alarm)
    if alarm is None:
        action = "create"
    else:
        wanted = alarm_definition(stack, have["PolicyARN"] if have else "")
        wanted.pop("AlarmName")
        if not have:
            wanted.pop("AlarmActions")
        same = subset(alarm, wanted)
        action = "unchanged" if same and not policy_changes else "update"
    put_alarm = Call(
        "cloudwatch",
        "PutMetricAlarm",
        {**alarm_definition(stack, Ref("step_policy_arn")), "Tags": tag_list(stack)},
    )
    steps.append(
        Step(
            "cloudwatch alarm",
            stack.alarm,
            action,
            "queue non-empty, no tasks",
            [] if action == "unchanged" else [put_alarm],
        )
    )
    return steps


def plan_delete_scaling(ctx: Context) -> list[Step]:
    """The alarm, the policies, then the target (the reverse of their making)."""
    stack, aas = ctx.stack, ctx.clients.application_autoscaling
    alarm = find_alarm(ctx.clients.cloudwatch, stack.alarm)
    steps = [
        Step(
            "cloudwatch alarm",
            stack.alarm,
            "delete" if alarm else "absent",
            instructions=[Call("cloudwatch", "DeleteAlarms", {"AlarmNames": [stack.alarm]})]
            if alarm
            else [],
        )
    ]
    scalable = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": stack.scaling_resource_id,
        "ScalableDimension": DIMENSION,
    }
    policies = find_policies(aas, stack)
    for name, kind in (
        (stack.target_policy, "target tracking policy"),
        (stack.step_policy, "step scaling policy"),
    ):
        steps.append(
            Step(
                kind,
                name,
                "delete" if name in policies else "absent",
                instructions=[
                    Call(
                        "application-autoscaling",
                        "DeleteScalingPolicy",
                        {"PolicyName": name, **scalable},
                    )
                ]
                if name in policies
                else [],
            )
        )
    target = find_target(aas, stack)
    steps.append(
        Step(
            "scalable target",
            stack.scaling_resource_id,
            "delete" if target else "absent",
            instructions=[Call("application-autoscaling", "DeregisterScalableTarget", scalable)]
            if target
            else [],
        )
    )
    return steps


def _policy_action(have: dict | None, key: str, wanted: dict) -> str:
    """create / unchanged / update for a scaling policy found (or not) by name."""
    if have is None:
        return "create"
    return "unchanged" if subset(have.get(key), wanted) else "update"
