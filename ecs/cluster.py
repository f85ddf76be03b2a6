"""The ECS cluster, the worker's task definition, and the Fargate service."""

from __future__ import annotations

from dataclasses import replace

from ecs.callback_secret import container_secrets
from ecs.plan import Call, Context, Ref, Retry, Step, Wait, canonical_json, tag_list
from ecs.retry import role_not_ready
from ecs.stack import CONTAINER, STOP_TIMEOUT

CAPACITY_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]
NEW_REVISION = "(new revision)"
# ECS rejects roles made seconds ago (and, on an account's first cluster, its own
# service-linked role) until IAM has propagated them.
ROLE_PROPAGATION_SECONDS = 120.0
# A deleted service stays DRAINING until its tasks have stopped (SIGTERM, stopTimeout).
DRAINING_SECONDS = STOP_TIMEOUT + 480.0


def capacity_strategy(spot: bool) -> list[dict]:
    # Workers survive interruption (late acks, warm shutdown within the 2-minute Spot
    # notice), so most capacity can be Spot; one in five tasks stays on regular Fargate.
    if spot:
        return [
            {"capacityProvider": "FARGATE_SPOT", "weight": 4, "base": 0},
            {"capacityProvider": "FARGATE", "weight": 1, "base": 0},
        ]
    return [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}]


def find_cluster(ecs, name: str) -> dict | None:
    found = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"]
    return next((c for c in found if c.get("status") == "ACTIVE"), None)


def plan_cluster(ctx: Context) -> Step:
    stack, ecs = ctx.stack, ctx.clients.ecs
    strategy = capacity_strategy(stack.options.spot)
    cluster = find_cluster(ecs, stack.cluster)
    changes = []
    if cluster is None:
        action = "create"
    else:
        if sorted(cluster.get("capacityProviders") or []) != sorted(CAPACITY_PROVIDERS):
            changes.append("capacity providers")
        settings = {s["name"]: s["value"] for s in cluster.get("settings") or []}
        # RunningTaskCount, which the scaling policy divides by, is a Container Insights metric.
        if settings and settings.get("containerInsights") != "enabled":
            changes.append("container insights")
        action = "update" if changes else "unchanged"

    calls = []
    if cluster is None:
        calls.append(
            Call(
                "ecs",
                "CreateCluster",
                {
                    "clusterName": stack.cluster,
                    "capacityProviders": CAPACITY_PROVIDERS,
                    "defaultCapacityProviderStrategy": strategy,
                    "settings": [{"name": "containerInsights", "value": "enabled"}],
                    "tags": tag_list(stack, "key", "value"),
                },
            )
        )
    if "capacity providers" in changes:
        calls.append(
            Call(
                "ecs",
                "PutClusterCapacityProviders",
                {
                    "cluster": stack.cluster,
                    "capacityProviders": CAPACITY_PROVIDERS,
                    "defaultCapacityProviderStrategy": strategy,
                },
            )
        )
    if "container insights" in changes:
        calls.append(
            Call(
                "ecs",
                "UpdateClusterSettings",
                {
                    "cluster": stack.cluster,
                    "settings": [{"name": "containerInsights", "value": "enabled"}],
                },
            )
        )
    return Step("ecs cluster", stack.cluster, action, ", ".join(changes), calls)


def plan_delete_cluster(ctx: Context) -> Step:
    found = find_cluster(ctx.clients.ecs, ctx.stack.cluster)
    return Step(
        "ecs cluster",
        ctx.stack.cluster,
        "delete" if found else "absent",
        instructions=[Call("ecs", "DeleteCluster", {"cluster": ctx.stack.cluster})]
        if found
        else [],
    )


def render_task_definition(stack, image: str, callback_secret_arn: str | None = None) -> dict:
    """The task definition `deploy` registers (without tags), as register_task_definition
    takes it. The callbacks' HMAC key comes in through ECS `secrets` (ecs.callback_secret)."""
    o = stack.options
    env = stack.worker_environment()
    return {
        "family": stack.family,
        "taskRoleArn": stack.role_arn(stack.task_role),
        "executionRoleArn": stack.role_arn(stack.execution_role),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": str(o.cpu),
        "memory": str(o.memory),
        "runtimePlatform": {"cpuArchitecture": o.architecture, "operatingSystemFamily": "LINUX"},
        "containerDefinitions": [
            {
                "name": CONTAINER,
                "image": image,
                "essential": True,
                "stopTimeout": STOP_TIMEOUT,
                # ECS Exec needs an init process to reap its agent's children.
                "linuxParameters": {"initProcessEnabled": True},
                "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
                **(
                    {"secrets": container_secrets(callback_secret_arn)}
                    if callback_secret_arn
                    else {}
                ),
                "healthCheck": {
                    "command": ["CMD", "python", "-m", "tasks.worker.health"],
                    "interval": 30,
                    "timeout": 10,
                    "retries": 3,
                    "startPeriod": 60,
                },
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": stack.log_group,
                        "awslogs-region": stack.region,
                        "awslogs-stream-prefix": "worker",
                    },
                },
            }
        ],
    }


def _same(current, desired) -> bool:
    """Does the registered definition say what we would register? Only the keys we set are
    compared (AWS adds defaults of its own); lists of name/value pairs ignore order."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            _same(current.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(current, list) or len(current) != len(desired):
            return False
        if desired and all(isinstance(d, dict) and "name" in d and "value" in d for d in desired):
            current = sorted(current, key=lambda d: d.get("name", ""))
            desired = sorted(desired, key=lambda d: d["name"])
        return all(_same(c, d) for c, d in zip(current, desired, strict=True))
    if (
        isinstance(desired, str | int)
        and not isinstance(desired, bool)
        and isinstance(current, str | int)
        and not isinstance(current, bool)
    ):
        return str(current) == str(desired)
    return current == desired


def latest_task_definition(ecs, family: str) -> dict | None:
    arns = ecs.list_task_definitions(
        familyPrefix=family, status="ACTIVE", sort="DESC", maxResults=1
    )["taskDefinitionArns"]
    if not arns:
        return None
    return ecs.describe_task_definition(taskDefinition=arns[0])["taskDefinition"]


def plan_task_definition(ctx: Context) -> Step:
    stack, ecs = ctx.stack, ctx.clients.ecs
    desired = render_task_definition(
        stack, ctx.predicted["image"], ctx.predicted.get("callback_secret_arn")
    )
    latest = latest_task_definition(ecs, stack.family)
    if latest is not None and _same(latest, desired):
        arn = latest["taskDefinitionArn"]
        ctx.predicted["task_definition"] = arn
        return Step(
            "ecs task definition",
            f"{stack.family}:{latest['revision']}",
            "unchanged",
            outputs={"task_definition": arn},
        )
    ctx.predicted["task_definition"] = NEW_REVISION
    action = "create" if latest is None else "update"
    # The secret's ARN may be one the secret's step records (a new secret).
    secret = ctx.predicted.get("callback_secret_arn")
    definition = render_task_definition(
        stack, ctx.predicted["image"], Ref("callback_secret_arn") if secret else None
    )
    register = Call(
        "ecs",
        "RegisterTaskDefinition",
        {**definition, "tags": tag_list(stack, "key", "value")},
        record={
            "task_definition": "taskDefinition.taskDefinitionArn",
            "task_revision": "taskDefinition.revision",
        },
        retry=Retry(role_not_ready, ROLE_PROPAGATION_SECONDS),
    )
    detail = "new revision" if latest else ""
    return Step(
        "ecs task definition",
        stack.family,
        action,
        detail,
        [register],
        done="revision {task_revision}",
    )


def plan_delete_task_definitions(ctx: Context) -> Step:
    """Every revision: deregistered (INACTIVE), then deleted, ten at a time."""
    stack, ecs = ctx.stack, ctx.clients.ecs

    def listed(status: str) -> list[str]:
        return [
            arn
            for page in ecs.get_paginator("list_task_definitions").paginate(
                familyPrefix=stack.family, status=status
            )
            for arn in page["taskDefinitionArns"]
        ]

    active = listed("ACTIVE")
    inactive = listed("INACTIVE") + active
    calls = [Call("ecs", "DeregisterTaskDefinition", {"taskDefinition": arn}) for arn in active]
    calls += [
        Call("ecs", "DeleteTaskDefinitions", {"taskDefinitions": inactive[i : i + 10]})
        for i in range(0, len(inactive), 10)
    ]
    if not active:
        return Step("ecs task definition", stack.family, "absent", instructions=calls)
    return Step(
        "ecs task definition",
        f"{stack.family} ({len(active)} revision(s))",
        "delete",
        instructions=calls,
        count=len(active),
    )


def describe_service(ecs, cluster: str, name: str) -> dict | None:
    """The service in whatever state (ACTIVE, DRAINING, INACTIVE), or None."""
    if find_cluster(ecs, cluster) is None:
        return None
    found = ecs.describe_services(cluster=cluster, services=[name])["services"]
    return found[0] if found else None


def find_service(ecs, cluster: str, name: str) -> dict | None:
    """The ACTIVE service. A DRAINING one (deleted, its tasks still stopping) or an
    INACTIVE one (deleted) is gone as far as the stack is concerned: neither can be
    updated, and a new one of that name can be created once it is no longer DRAINING."""
    found = describe_service(ecs, cluster, name)
    return found if found and found.get("status") == "ACTIVE" else None


def wait_until_drained(ctx: Context, reason: str = "") -> Wait:
    """Until the deleted service of this name is no longer DRAINING."""
    stack, ecs = ctx.stack, ctx.clients.ecs

    def drained(outputs) -> tuple[bool, str]:
        found = describe_service(ecs, stack.cluster, stack.service)
        if found is None or found.get("status") != "DRAINING":
            return True, ""
        return False, (
            f"deleted service still DRAINING, {found.get('runningCount', 0)} "
            f"task(s) stopping{reason}"
        )

    return Wait(
        f"service {stack.cluster}/{stack.service} draining",
        drained,
        deadline=DRAINING_SECONDS,
        interval=10,
        calls=(
            Call(
                "ecs", "DescribeServices", {"cluster": stack.cluster, "services": [stack.service]}
            ),
        ),
    )


def network_configuration(stack, subnets: str, security_group: str) -> dict:
    # Default-VPC subnets are public and have no NAT: the task needs a public IP to reach
    # ECR, SQS and DynamoDB. Given subnets are assumed to be private ones with a route out.
    return {
        "awsvpcConfiguration": {
            "subnets": sorted(subnets.split(",")),
            "securityGroups": [security_group],
            "assignPublicIp": "DISABLED" if stack.options.subnets else "ENABLED",
        }
    }


DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


def _service_changes(service: dict, wanted: dict) -> list[str]:
    """Fields that differ. A field the description leaves out is not compared: AWS always
    reports these, but emulators drop some (moto: strategy, circuit breaker, exec)."""
    changes = []
    if service.get("taskDefinition") != wanted["taskDefinition"]:
        changes.append("task definition")
    have = service.get("capacityProviderStrategy")
    wanted_strategy = wanted["capacityProviderStrategy"]
    if have is not None and canonical_json(have) != canonical_json(wanted_strategy):
        changes.append("capacity providers")
    net = service.get("networkConfiguration")
    if net is not None and canonical_json(net) != canonical_json(wanted["networkConfiguration"]):
        changes.append("network")
    breaker = (service.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker")
    if breaker is not None and breaker != DEPLOYMENT_CONFIGURATION["deploymentCircuitBreaker"]:
        changes.append("circuit breaker")
    exec_on = service.get("enableExecuteCommand")
    if exec_on is not None and bool(exec_on) != wanted["enableExecuteCommand"]:
        changes.append("ecs exec")
    return changes


def plan_service(ctx: Context) -> Step:
    stack, ecs = ctx.stack, ctx.clients.ecs
    o = stack.options
    existing = describe_service(ecs, stack.cluster, stack.service)
    service = existing if existing and existing.get("status") == "ACTIVE" else None
    draining = existing is not None and existing.get("status") == "DRAINING"
    name = f"{stack.cluster}/{stack.service}"
    network = network_configuration(
        stack, ctx.predicted["subnets"], ctx.predicted["security_group"]
    )
    wanted = {
        "taskDefinition": ctx.predicted.get("task_definition", NEW_REVISION),
        "capacityProviderStrategy": capacity_strategy(o.spot),
        "networkConfiguration": network,
        "enableExecuteCommand": o.enable_exec,
    }
    if service is None:
        changes, action = [], "create"
    else:
        changes = _service_changes(service, wanted)
        action = "update" if changes else "unchanged"
    # The steps after this one wait for the rollout and smoke-test the new revision.
    ctx.predicted["service_action"] = action
    ctx.predicted["new_revision"] = "yes" if service is None or "task definition" in changes else ""

    common = {
        "cluster": stack.cluster,
        "taskDefinition": Ref("task_definition"),
        "capacityProviderStrategy": wanted["capacityProviderStrategy"],
        "networkConfiguration": network_configuration(
            stack, ctx.predicted["subnets"], ctx.predicted["security_group"]
        ),
        "deploymentConfiguration": DEPLOYMENT_CONFIGURATION,
        "enableExecuteCommand": o.enable_exec,
    }
    if ctx.predicted["security_group"] == "(new)":
        common["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] = [
            Ref("security_group")
        ]
    retry = Retry(role_not_ready, ROLE_PROPAGATION_SECONDS)
    instructions = []
    if service is None:
        if draining:
            instructions.append(
                wait_until_drained(ctx, "; ECS refuses a new service of its name until then")
            )
        instructions.append(
            Call(
                "ecs",
                "CreateService",
                {
                    "serviceName": stack.service,
                    "desiredCount": o.min_tasks,
                    "propagateTags": "SERVICE",
                    "enableECSManagedTags": True,
                    "tags": tag_list(stack, "key", "value"),
                    **common,
                },
                retry=retry,
            )
        )
    elif action == "update":
        # No desiredCount: a redeploy keeps whatever autoscaling has chosen.
        instructions.append(
            Call("ecs", "UpdateService", {"service": stack.service, **common}, retry=retry)
        )
    # Kept so that a failed smoke check can put the service back on it.
    known = {"previous_task_definition": service["taskDefinition"]} if service else {}
    detail = "previous service still draining" if draining else ", ".join(changes)
    return Step("ecs service", name, action, detail, instructions, outputs=known)


def plan_delete_service(ctx: Context) -> Step:
    """force: stops the running tasks (SIGTERM, then stopTimeout) instead of refusing; then
    wait while it drains, since the cluster cannot go before (ClusterContainsServices)."""
    stack = ctx.stack
    found = describe_service(ctx.clients.ecs, stack.cluster, stack.service)
    name = f"{stack.cluster}/{stack.service}"
    status = (found or {}).get("status")
    if status not in ("ACTIVE", "DRAINING"):
        return Step("ecs service", name, "absent")
    wait = replace(
        wait_until_drained(ctx),
        warn_on_timeout=("service still draining: {error}; the cluster may refuse deletion"),
    )
    delete = Call(
        "ecs", "DeleteService", {"cluster": stack.cluster, "service": stack.service, "force": True}
    )
    # A service already DRAINING was deleted by someone else: waited for, not counted.
    return Step(
        "ecs service",
        name,
        "delete",
        instructions=[delete, wait] if status == "ACTIVE" else [wait],
        count=1 if status == "ACTIVE" else 0,
    )
