"""`destroy`: the resources' removal plans (ecs.resources), in the reverse of deploy's
order, carried out by the same executor, or shown with their calls (`--dry-run`).

Every removal planner looks its resource up and says "absent" when it is gone, so a stack
that was half deployed, or half destroyed by an earlier run, is always removed to the end.
"""

from __future__ import annotations

from collections.abc import Callable

from ecs.executor import Display, Executor
from ecs.plan import Context, Plan
from ecs.resources import removal_steps
from ecs.retry import REAL_CLOCK, Clock
from ecs.stack import Stack

Echo = Callable[[str], None]


def make_plan(
    clients, stack: Stack, *, keep_data: bool = False, echo: Echo = print, clock: Clock = REAL_CLOCK
) -> Plan:
    """Look every resource up and plan its removal; changes nothing."""
    return Plan(removal_steps(Context(clients, stack, echo=echo, clock=clock, keep_data=keep_data)))


def destroy(
    clients,
    stack: Stack,
    *,
    keep_data: bool = False,
    echo: Echo = print,
    clock: Clock = REAL_CLOCK,
    dry_run: bool = False,
) -> int:
    """Delete the stack (or, dry, show how); returns how many resources were deleted."""
    if dry_run:
        echo(f"plan to destroy stack {stack.name} in {stack.region} (nothing is changed)")
        plan = make_plan(clients, stack, keep_data=keep_data, echo=echo, clock=clock)
        Display(echo, calls=True).apply(plan)
        echo(plan.summary() if plan.changes else "nothing left to delete")
        return 0
    echo(f"destroying stack {stack.name} in {stack.region}")
    plan = make_plan(clients, stack, keep_data=keep_data, echo=echo, clock=clock)
    Executor(Context(clients, stack, echo=echo, clock=clock)).apply(plan)
    deleted = plan.removed
    echo(f"{deleted} resource(s) deleted" if deleted else "nothing left to delete")
    return deleted
