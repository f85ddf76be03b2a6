"""ECS scale-in protection while this worker runs jobs, let go so that deploys finish.

When ECS scales the service in, it stops tasks it chooses, and a running job
is interrupted (and redelivered later). With ECS_AGENT_URI set (ECS sets it in
every container), this middleware asks the ECS agent to protect the task
while any job is running or waiting for a pool process, and to drop the
protection once the worker is idle:

    PUT $ECS_AGENT_URI/task-protection/v1/state
    {"ProtectionEnabled": true, "ExpiresInMinutes": N}

N is longer than the queue's visibility timeout: if the worker hangs or the
release is lost, the protection lapses by itself. It is renewed at N/2 while
jobs keep running. The agent's answers are logged; a failure never stops a job.

Letting deploys and scale-in finish. ECS stops no protected task, neither for
scale-in nor for a rolling deployment, so a worker that is never idle would
hold both back for ever. The worker therefore *drains* (stops taking messages,
as `celery control cancel_consumer` does; lets the jobs it holds finish; then
releases its protection) when either:

* its task no longer belongs to the service's PRIMARY deployment (a deploy has
  begun). Checked every ECS_DEPLOYMENT_CHECK_SECONDS (30) while protected, from
  the task metadata endpoint ($ECS_CONTAINER_METADATA_URI_V4/task: cluster,
  task ARN, family and revision), ecs:DescribeTasks once (the deployment that
  started the task, `startedBy`, and its service, `group`) and
  ecs:DescribeServices. The worker stays drained: ECS stops it next (or, should
  it not, the health check does once the heartbeat is too old: nothing is received);
* or it has been protected without a break for ECS_PROTECTION_MAX_WINDOW
  seconds (1800). It takes messages again after ECS_PROTECTION_COOLDOWN seconds
  (60, and never less than the long-poll wait + 5 s), a window in which ECS may
  stop it. This bounds the wait when the deployment check cannot run (no IAM
  permission, a task outside a service).

Bounds. Once a deployment starts, this task's protection is released within
ECS_DEPLOYMENT_CHECK_SECONDS + the longest job the worker holds at that moment
+ MIN_PUT_INTERVAL (10 s) + 2 s; without the check, within
ECS_PROTECTION_MAX_WINDOW + the same. Meanwhile the messages it no longer takes
stay in the queue for the other (new) tasks.

Rate. The agent relays each PUT to ECS's UpdateTaskProtection API, which ECS
throttles per account and Region (a token bucket). Each worker sends at most
one PUT every MIN_PUT_INTERVAL (10 s), whatever the load, plus a single release
on SIGTERM; under steady load that is one renewal every N/2 minutes and one
release/enable pair per max window; a failed or refused PUT is retried after
10 s, doubling up to 120 s. The price of the interval: a job that arrives less
than 10 s after a release runs unprotected for the rest of those seconds (a
scale-in then is a warm shutdown, which lets it finish).

SIGTERM/SIGINT/SIGQUIT: the protection is released at once (the warm shutdown
still lets the running jobs finish).

IAM (task role): ecs:UpdateTaskProtection on the cluster's tasks (the agent
calls it with the task's credentials); for the deployment check,
ecs:DescribeTasks on the cluster's tasks and ecs:DescribeServices on the
service. Without the latter two the check logs why once and turns itself off.

Calls run on threads of their own so the consumer's event loop never waits.
"""

from tasks.worker.protection.agent import HTTP_TIMEOUT, AgentClient, protection_minutes
from tasks.worker.protection.deployment import DENIED, ECS_CONFIG, DeploymentWatch, TaskIdentity
from tasks.worker.protection.drain import (
    CHECK_INTERVAL,
    COOLDOWN_MARGIN,
    DEFAULT_COOLDOWN,
    DEFAULT_DEPLOYMENT_CHECK,
    DEFAULT_MAX_WINDOW,
    DRAINING,
    MAX_BACKOFF,
    MIN_PUT_INTERVAL,
    PAUSED,
    RETIRED,
    SERVING,
)
from tasks.worker.protection.middleware import ScaleInProtection

__all__ = [
    "CHECK_INTERVAL",
    "COOLDOWN_MARGIN",
    "DEFAULT_COOLDOWN",
    "DEFAULT_DEPLOYMENT_CHECK",
    "DEFAULT_MAX_WINDOW",
    "DENIED",
    "DRAINING",
    "ECS_CONFIG",
    "HTTP_TIMEOUT",
    "MAX_BACKOFF",
    "MIN_PUT_INTERVAL",
    "PAUSED",
    "RETIRED",
    "SERVING",
    "AgentClient",
    "DeploymentWatch",
    "ScaleInProtection",
    "TaskIdentity",
    "protection_minutes",
]
