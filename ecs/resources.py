"""The stack's resources in the order they depend on one another, each kind with the plan
that makes it (deploy) and the plan that removes it (destroy), both in its own module.

`deploy` plans them in this order; `destroy` in the reverse one, so that nothing is removed
while something made after it still uses it. The order is also a rolling deploy's: image,
task definition, service, the rollout waited for (and a smoke task of the new revision
when the rollout ran none), and only then the alarms and the API, so that a new public
task is never reachable before workers know it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ecs import (
    alarms,
    api,
    callback_secret,
    cluster,
    data,
    log_group,
    network,
    registry,
    roles,
    rollout,
    scaling,
    schedules,
)
from ecs.plan import Context, Step

Planner = Callable[[Context], Step | list[Step]]


@dataclass(frozen=True)
class Resource:
    what: str
    create: Planner
    delete: Planner | None = None  # None: goes with another (the image with its repository)


RESOURCES = [
    # First: every role is made with it, and a deployer that lacks it (an administrator
    # makes it) is stopped before anything is made. Destroy keeps it, last.
    Resource("permissions boundary", roles.plan_boundary, roles.plan_delete_boundary),
    Resource("jobs table", data.plan_table, data.plan_delete_table),
    Resource("queue and dead-letter queue", data.plan_queues, data.plan_delete_queues),
    Resource("bucket of large objects", data.plan_bucket, data.plan_delete_bucket),
    Resource("image repository", registry.plan_repository, registry.plan_delete_repository),
    Resource("worker image", registry.plan_image),
    Resource("log group", log_group.plan_log_group, log_group.plan_delete_log_group),
    # Before the task definition, which names its ARN.
    Resource(
        "callback secret",
        callback_secret.plan_callback_secret,
        callback_secret.plan_delete_callback_secret,
    ),
    Resource("roles", roles.plan_roles, roles.plan_delete_roles),
    Resource("cluster", cluster.plan_cluster, cluster.plan_delete_cluster),
    Resource("security group", network.plan_network, network.plan_delete_network),
    Resource("task definition", cluster.plan_task_definition, cluster.plan_delete_task_definitions),
    Resource("service", cluster.plan_service, cluster.plan_delete_service),
    Resource("rollout", rollout.plan_rollout),
    Resource("smoke task", rollout.plan_smoke, rollout.plan_delete_smoke),
    Resource("autoscaling", scaling.plan_scaling, scaling.plan_delete_scaling),
    Resource("alarms", alarms.plan_alarms, alarms.plan_delete_alarms),
    Resource("api", api.plan_api, api.plan_delete_api),
    # Last: a schedule fires only once workers that know its task serve the queue; and
    # destroy removes them first, so that nothing fires into a queue that is going away.
    Resource("schedules", schedules.plan_schedules, schedules.plan_delete_schedules),
]


def steps_of(planner: Planner, ctx: Context) -> list[Step]:
    made = planner(ctx)
    return made if isinstance(made, list) else [made]


def creation_steps(ctx: Context) -> list[Step]:
    return [step for r in RESOURCES for step in steps_of(r.create, ctx)]


def removal_steps(ctx: Context) -> list[Step]:
    return [step for r in reversed(RESOURCES) if r.delete for step in steps_of(r.delete, ctx)]
