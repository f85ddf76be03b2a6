"""`deploy` and `plan`: every resource of the stack, in the order they depend on.

The order is also a rolling deploy's: image, task definition, service, the rollout waited
for (and a smoke task of the new revision when the rollout ran none), and only then the
alarms and the API, so that a new public task is never reachable before workers know it.
"""

from __future__ import annotations

from collections.abc import Callable

from ecs import alarms, api, cluster, data, log_group, network, registry, roles, rollout, scaling
from ecs import schedules as schedule_steps
from ecs.callback_secret import plan_callback_secret
from ecs.image import ImageBuilder
from ecs.plan import Context, Outputs, Plan, Step, apply
from ecs.retry import REAL_CLOCK, Clock
from ecs.stack import STAGE, Stack


def make_plan(clients, stack: Stack, builder: ImageBuilder | None = None,
              echo: Callable[[str], None] = print, clock: Clock = REAL_CLOCK) -> Plan:
    """Look every resource up and decide what to do with it; changes nothing."""
    builder = builder or ImageBuilder()
    ctx = Context(clients, stack, echo=echo, clock=clock)
    steps: list[Step] = [
        # First: every role is made with it, and a deployer that lacks it (an administrator
        # makes it) is stopped before anything is made.
        roles.plan_boundary(ctx),
        data.plan_table(ctx),
        data.plan_queues(ctx),
        data.plan_bucket(ctx),
        registry.plan_repository(ctx),
        registry.plan_image(ctx, builder),
        log_group.plan_log_group(ctx),
        plan_callback_secret(ctx),  # before the task definition, which names its ARN
        *roles.plan_roles(ctx),
        cluster.plan_cluster(ctx),
        network.plan_network(ctx),
        cluster.plan_task_definition(ctx),
        cluster.plan_service(ctx),
        rollout.plan_rollout(ctx),
        rollout.plan_smoke(ctx),
        *scaling.plan_scaling(ctx),
        *alarms.plan_alarms(ctx),
        *api.plan_api(ctx),
        # Last: a schedule fires only once workers that know its task serve the queue.
        *schedule_steps.plan_schedules(ctx),
    ]
    return Plan(steps)


def show_plan(plan: Plan, echo: Callable[[str], None] = print) -> None:
    for step in plan.steps:
        echo(step.line(done=False))
    echo(plan.summary() if plan.changes else "nothing to do: the stack is up to date")


def deploy(clients, stack: Stack, builder: ImageBuilder | None = None,
           echo: Callable[[str], None] = print, clock: Clock = REAL_CLOCK) -> Outputs:
    echo(f"deploying stack {stack.name} to {stack.region} (account {stack.account_id})")
    plan = make_plan(clients, stack, builder, echo=echo, clock=clock)
    outputs = apply(plan, echo)
    print_endpoint(stack, outputs, echo)
    return outputs


def print_endpoint(stack: Stack, outputs: Outputs, echo: Callable[[str], None]) -> None:
    url = stack.api_url(outputs["api_id"])
    key_id = outputs["api_key_id"]
    echo("")
    echo(f"API URL:    {url}")
    echo(f"API key id: {key_id}")
    echo("Try it:")
    echo(f"  KEY=$(aws apigateway get-api-key --region {stack.region} --api-key {key_id} "
         "--include-value --query value --output text)")
    echo(f"  curl -s -X POST -H \"x-api-key: $KEY\" -H 'Content-Type: application/json' "
         f"-d '{{\"x\": 2, \"y\": 3}}' {url}/tasks/tasks.debug.add")
    echo(f"  curl -s -H \"x-api-key: $KEY\" {url}/jobs/JOB_ID")
    echo("Completion callbacks (X-Callback-Url) are signed with the key your receivers read with:")
    echo(f"  aws secretsmanager get-secret-value --region {stack.region} --secret-id "
         f"{stack.callback_secret_name} --query SecretString --output text")
    echo(f"(stage {STAGE}; the first job after a quiet spell waits a minute or two while the "
         "service scales out from zero)")
