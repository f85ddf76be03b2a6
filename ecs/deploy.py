"""`deploy` and `plan`: every resource of the stack (ecs.resources), planned in the order
they depend on, then carried out by the executor or shown by the display."""

from __future__ import annotations

from collections.abc import Callable

from ecs.executor import Display, Executor
from ecs.image import ImageBuilder
from ecs.plan import Context, Outputs, Plan
from ecs.resources import creation_steps
from ecs.retry import REAL_CLOCK, Clock
from ecs.stack import STAGE, Stack


def make_plan(
    clients,
    stack: Stack,
    builder: ImageBuilder | None = None,
    echo: Callable[[str], None] = print,
    clock: Clock = REAL_CLOCK,
) -> Plan:
    """Look every resource up and decide what to do with it; changes nothing."""
    ctx = Context(clients, stack, echo=echo, clock=clock, builder=builder or ImageBuilder())
    return Plan(creation_steps(ctx))


def show_plan(plan: Plan, echo: Callable[[str], None] = print, calls: bool = False) -> None:
    Display(echo, calls=calls).apply(plan)
    echo(plan.summary() if plan.changes else "nothing to do: the stack is up to date")


def deploy(
    clients,
    stack: Stack,
    builder: ImageBuilder | None = None,
    echo: Callable[[str], None] = print,
    clock: Clock = REAL_CLOCK,
) -> Outputs:
    echo(f"deploying stack {stack.name} to {stack.region} (account {stack.account_id})")
    plan = make_plan(clients, stack, builder, echo=echo, clock=clock)
    outputs = Executor(Context(clients, stack, echo=echo, clock=clock)).apply(plan)
    if plan.changes == 0:
        echo("nothing changed: the stack is up to date")
    print_endpoint(stack, outputs, echo)
    return outputs


def print_endpoint(stack: Stack, outputs: Outputs, echo: Callable[[str], None]) -> None:
    url = stack.api_url(outputs["api_id"])
    key_id = outputs["api_key_id"]
    echo("")
    echo(f"API URL:    {url}")
    echo(f"API key id: {key_id}")
    echo("Try it:")
    echo(
        f"  KEY=$(aws apigateway get-api-key --region {stack.region} --api-key {key_id} "
        "--include-value --query value --output text)"
    )
    echo(
        f"  curl -s -X POST -H \"x-api-key: $KEY\" -H 'Content-Type: application/json' "
        f'-d \'{{"x": 2, "y": 3}}\' {url}/tasks/tasks.debug.add'
    )
    echo(f'  curl -s -H "x-api-key: $KEY" {url}/jobs/JOB_ID')
    echo("Completion callbacks (X-Callback-Url) are signed with the key your receivers read with:")
    echo(
        f"  aws secretsmanager get-secret-value --region {stack.region} --secret-id "
        f"{stack.callback_secret_name} --query SecretString --output text"
    )
    echo(
        f"(stage {STAGE}; the first job after a quiet spell waits a minute or two while the "
        "service scales out from zero)"
    )
