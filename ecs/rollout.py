"""After the service step, and before the API: wait for ECS's rollout, then smoke-test the
new revision when the rollout ran none of its tasks.

A rolling deploy is image, task definition, service, *stable*, then the API, so that a new
public task is only reachable once workers that know it serve the queue. With zero tasks
(`--min-tasks 0`, the default) a rollout is stable at once and the circuit breaker never
sees the new revision, so `deploy` runs one task of it: it must reach RUNNING, report
HEALTHY (the container health check), and exit with code 0 on the SIGTERM of StopTask.
A smoke task that fails puts the service back on the revision it ran before.

The decisions are pure functions of ECS's descriptions (rollout_verdict, start_verdict,
stop_verdict) so that tests can play every answer ECS gives without running a task.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

from botocore.exceptions import ClientError

from ecs.cluster import find_cluster, find_service, network_configuration
from ecs.plan import Call, Context, Do, Ref, Step, Wait
from ecs.retry import WaitTimeout, poll, retry_until, role_not_ready
from ecs.stack import CONTAINER, SMOKE_STARTED_BY, STOP_TIMEOUT

POLL_SECONDS = 10.0
ROLE_PROPAGATION_SECONDS = 120.0
# StopTask sends SIGTERM, then SIGKILL after stopTimeout; then Fargate deprovisions.
STOP_SECONDS = STOP_TIMEOUT + 60.0
_STOPPING = ("DEACTIVATING", "STOPPING", "DEPROVISIONING")


class RolloutFailed(RuntimeError):
    pass


class SmokeFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Verdict:
    state: Literal["waiting", "done", "failed"]
    text: str


def revision(arn: str) -> str:
    """`family:3` from a task definition ARN."""
    return arn.rsplit("/", 1)[-1]


def rollout_verdict(service: dict, task_definition: str) -> Verdict:
    """Where the service's rollout of `task_definition` stands."""
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    # The PRIMARY one when it runs our revision (a change of, say, capacity providers makes
    # a new deployment of the same revision); else the one that does (rolled back).
    ours = (
        primary
        if primary and primary.get("taskDefinition") == task_definition
        else next((d for d in deployments if d.get("taskDefinition") == task_definition), None)
    )
    rev = revision(task_definition)
    if ours is None or primary is None:
        return Verdict(
            "failed", f"the service has no deployment of {rev} (did another deploy replace it?)"
        )
    rolled_back = primary.get("id") != ours.get("id")
    if ours.get("rolloutState") == "FAILED" or rolled_back:
        text = f"the rollout of {rev} failed"
        if ours.get("rolloutStateReason"):
            text += f": {ours['rolloutStateReason'].rstrip('.')}"
        if rolled_back:
            text += (
                f"; the circuit breaker rolled the service back to "
                f"{revision(primary.get('taskDefinition', '?'))}"
            )
        return Verdict("failed", text)
    old = len(deployments) - 1
    text = (
        f"{rev}: {ours.get('runningCount', 0)} of {ours.get('desiredCount', 0)} running, "
        f"{ours.get('pendingCount', 0)} pending"
    )
    if ours.get("failedTasks"):
        text += f", {ours['failedTasks']} failed to start"
    if old:
        text += f"; {old} older deployment(s) draining"
    steady = (
        old == 0
        and ours.get("runningCount", 0) == ours.get("desiredCount", 0)
        and ours.get("rolloutState") in (None, "COMPLETED")
    )
    return Verdict("done" if steady else "waiting", text)


def _container(task: dict) -> dict:
    return next((c for c in task.get("containers", []) if c.get("name") == CONTAINER), {})


def describe_stop(task: dict) -> str:
    """Why a task stopped, as ECS tells it: reason, stop code, the container's exit."""
    parts = [task.get("stoppedReason") or "no reason given"]
    if task.get("stopCode"):
        parts.append(f"stop code {task['stopCode']}")
    container = _container(task)
    if container.get("exitCode") is not None:
        parts.append(f"container exit code {container['exitCode']}")
    if container.get("reason"):
        parts.append(f"container: {container['reason']}")
    return "; ".join(parts)


def start_verdict(task: dict) -> Verdict:
    """Has the smoke task started and passed its health check?"""
    last = task.get("lastStatus", "PROVISIONING")
    health = {task.get("healthStatus"), _container(task).get("healthStatus")}
    if last == "STOPPED":
        return Verdict("failed", f"it stopped before it was healthy: {describe_stop(task)}")
    if "UNHEALTHY" in health:
        return Verdict(
            "failed",
            "the container health check (python -m tasks.worker.health) reported UNHEALTHY",
        )
    if task.get("desiredStatus") == "STOPPED" or last in _STOPPING:
        # Wait for STOPPED, which carries the exit code.
        return Verdict(
            "waiting",
            f"{last}, being stopped by ECS: {task.get('stoppedReason') or 'no reason yet'}",
        )
    if last == "RUNNING" and "HEALTHY" in health:
        return Verdict("done", "RUNNING and HEALTHY")
    shown = _container(task).get("healthStatus") or task.get("healthStatus") or "UNKNOWN"
    return Verdict("waiting", f"{last}, health {shown}")


def stop_verdict(task: dict) -> Verdict:
    """After StopTask (SIGTERM): did the worker exit cleanly?"""
    last = task.get("lastStatus", "?")
    if last != "STOPPED":
        return Verdict(
            "waiting",
            f"{last} after SIGTERM (a worker finishes or hands back "
            f"its jobs within {STOP_TIMEOUT}s)",
        )
    code = _container(task).get("exitCode")
    if code == 0:
        return Verdict("done", "exited with code 0 on SIGTERM")
    if code is None:
        return Verdict("failed", f"it stopped without an exit code: {describe_stop(task)}")
    if code == 137:
        return Verdict(
            "failed",
            f"it was killed (exit code 137): no exit within the "
            f"{STOP_TIMEOUT}s stopTimeout after SIGTERM",
        )
    return Verdict("failed", f"it exited with code {code} on SIGTERM: {describe_stop(task)}")


def stopped_tasks(ecs, stack, task_definition: str, limit: int = 3) -> list[str]:
    """The latest stopped tasks of a revision, with why they stopped (ECS keeps stopped
    tasks for about an hour)."""
    arns = ecs.list_tasks(
        cluster=stack.cluster, serviceName=stack.service, desiredStatus="STOPPED", maxResults=100
    )["taskArns"]
    if not arns:
        return []
    tasks = [
        t
        for t in ecs.describe_tasks(cluster=stack.cluster, tasks=arns)["tasks"]
        if t.get("taskDefinitionArn") == task_definition
    ]
    tasks.sort(key=lambda t: str(t.get("stoppedAt", "")), reverse=True)
    return [f"task {t['taskArn'].rsplit('/', 1)[-1]}: {describe_stop(t)}" for t in tasks[:limit]]


def _logs_hint(stack) -> str:
    return (
        f"\n    the workers' output: python -m ecs logs --stack {stack.name} "
        f"--region {stack.region} --since 30m"
    )


def _failure_details(ecs, stack, service: dict | None, task_definition: str) -> str:
    lines = stopped_tasks(ecs, stack, task_definition)
    events = [e.get("message", "") for e in (service or {}).get("events", [])[:3]]
    lines += [f"event: {m}" for m in events if m]
    return "".join(f"\n    {line}" for line in lines) + _logs_hint(stack)


def plan_rollout(ctx: Context) -> Step:
    stack, ecs = ctx.stack, ctx.clients.ecs
    name = f"{stack.cluster}/{stack.service}"
    kind = "ecs service rollout"
    if ctx.predicted.get("service_action") in (None, "unchanged"):
        return Step(kind, name, "unchanged")
    timeout = stack.options.rollout_timeout

    def run(outputs):
        task_definition = outputs["task_definition"]
        last: dict = {}

        def stable() -> tuple[bool, str]:
            service = find_service(ecs, stack.cluster, stack.service)
            if service is None:
                raise RolloutFailed("the service disappeared during its rollout")
            last["service"] = service
            verdict = rollout_verdict(service, task_definition)
            if verdict.state == "failed":
                raise RolloutFailed(
                    verdict.text + _failure_details(ecs, stack, service, task_definition)
                )
            return verdict.state == "done", verdict.text

        try:
            text = poll(
                stable,
                deadline=timeout,
                interval=POLL_SECONDS,
                clock=ctx.clock,
                progress=ctx.progress(kind, name),
                what=f"rollout of {name}",
            )
        except WaitTimeout as exc:
            raise WaitTimeout(
                str(exc) + _failure_details(ecs, stack, last.get("service"), task_definition)
            ) from exc
        deployment = next(
            d for d in last["service"]["deployments"] if d.get("taskDefinition") == task_definition
        )
        outputs["rollout_running"] = str(deployment.get("runningCount", 0))
        return f"stable: {text}"

    return Step(
        kind,
        name,
        "check",
        f"wait until stable, at most {timeout:.0f}s",
        [
            Do(
                "the service's deployment of the new revision is stable (circuit breaker on)",
                run,
                (
                    Call(
                        "ecs",
                        "DescribeServices",
                        {"cluster": stack.cluster, "services": [stack.service]},
                    ),
                ),
            )
        ],
    )


def _describe_task(ecs, stack, arn: str) -> dict:
    found = ecs.describe_tasks(cluster=stack.cluster, tasks=[arn])
    if not found["tasks"]:
        reasons = ", ".join(f.get("reason", "?") for f in found.get("failures", []))
        raise SmokeFailed(f"ECS no longer knows the smoke task ({reasons or 'missing'})")
    return found["tasks"][0]


def _judge(ecs, stack, arn: str, verdict_of) -> tuple[bool, str]:
    verdict = verdict_of(_describe_task(ecs, stack, arn))
    if verdict.state == "failed":
        raise SmokeFailed(verdict.text)
    return verdict.state == "done", verdict.text


def _put_back(ctx: Context, outputs) -> str:
    """After a failed smoke task: the service back on the revision it ran before."""
    stack, ecs = ctx.stack, ctx.clients.ecs
    previous = outputs.get("previous_task_definition")
    if not previous or previous == outputs["task_definition"]:
        return (
            f"; the service (no tasks running) stays on {revision(outputs['task_definition'])}"
            ": fix the image and deploy again"
        )
    ecs.update_service(cluster=stack.cluster, service=stack.service, taskDefinition=previous)
    return f"; the service is back on {revision(previous)}"


def smoke_test(ctx: Context, outputs) -> str:
    stack, ecs = ctx.stack, ctx.clients.ecs
    task_definition = outputs["task_definition"]
    progress = ctx.progress("smoke task", stack.family)
    started = retry_until(
        ecs.run_task,
        cluster=stack.cluster,
        taskDefinition=task_definition,
        count=1,
        startedBy=SMOKE_STARTED_BY,
        # Regular Fargate: a Spot interruption would read as a failed check.
        capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1, "base": 0}],
        networkConfiguration=network_configuration(
            stack, outputs["subnets"], outputs["security_group"]
        ),
        enableECSManagedTags=True,
        tags=[{"key": k, "value": v} for k, v in stack.tags.items()],
        retryable=role_not_ready,
        deadline=ROLE_PROPAGATION_SECONDS,
        clock=ctx.clock,
        progress=progress,
    )
    if not started.get("tasks"):
        reasons = "; ".join(
            f"{f.get('reason', '?')} {f.get('detail', '')}".strip()
            for f in started.get("failures", [])
        )
        raise SmokeFailed(
            f"ECS did not start the smoke task: {reasons or 'no reason given'}"
            + _put_back(ctx, outputs)
        )
    arn = started["tasks"][0]["taskArn"]
    progress(f"started task {arn.rsplit('/', 1)[-1]}")
    stopped = False
    try:
        poll(
            lambda: _judge(ecs, stack, arn, start_verdict),
            deadline=stack.options.smoke_timeout,
            interval=POLL_SECONDS,
            progress=progress,
            what="smoke task becoming healthy",
            clock=ctx.clock,
        )
        ecs.stop_task(
            cluster=stack.cluster,
            task=arn,
            reason="deploy smoke check: healthy; now checking a clean stop",
        )
        text = poll(
            lambda: _judge(ecs, stack, arn, stop_verdict),
            deadline=STOP_SECONDS,
            interval=POLL_SECONDS,
            progress=progress,
            what="smoke task stopping",
            clock=ctx.clock,
        )
        stopped = True
        return f"{revision(task_definition)} was RUNNING and HEALTHY, then {text}"
    except (SmokeFailed, WaitTimeout) as exc:
        raise SmokeFailed(
            f"smoke task of {revision(task_definition)}: {exc}"
            + _put_back(ctx, outputs)
            + _logs_hint(stack)
        ) from exc
    finally:
        if not stopped:  # never leave it running, whatever went wrong (StopTask is idempotent)
            with contextlib.suppress(ClientError):
                ecs.stop_task(cluster=stack.cluster, task=arn, reason="deploy smoke check ended")


def plan_smoke(ctx: Context) -> Step:
    stack = ctx.stack
    kind = "smoke task"
    if not ctx.predicted.get("new_revision"):
        return Step(kind, stack.family, "unchanged")

    def run(outputs):
        running = int(outputs.get("rollout_running", "0"))
        if running:
            return f"not needed: {running} task(s) of the new revision passed the rollout"
        return smoke_test(ctx, outputs)

    cluster = {"cluster": stack.cluster}
    calls = (
        Call(
            "ecs",
            "RunTask",
            {
                **cluster,
                "taskDefinition": Ref("task_definition"),
                "count": 1,
                "startedBy": SMOKE_STARTED_BY,
            },
        ),
        Call("ecs", "DescribeTasks", cluster),
        Call("ecs", "StopTask", {**cluster, "task": Ref("smoke_task")}),
    )
    return Step(
        kind,
        stack.family,
        "check",
        "one task of the new revision, if none runs: RUNNING, HEALTHY, exit 0 on SIGTERM",
        [Do("run one task, see it healthy, stop it, see it exit 0", run, calls)],
    )


def plan_delete_smoke(ctx: Context) -> list[Step]:
    """A smoke task left running by an interrupted deploy would keep the cluster."""
    stack, ecs = ctx.stack, ctx.clients.ecs
    if find_cluster(ecs, stack.cluster) is None:
        return []
    cluster = {"cluster": stack.cluster}
    # startedBy must be ListTasks' only filter; it lists tasks whose desired status is
    # RUNNING by default, which are the ones to stop.
    listed = ecs.list_tasks(**cluster, startedBy=SMOKE_STARTED_BY)["taskArns"]
    described = ecs.describe_tasks(**cluster, tasks=listed)["tasks"] if listed else []
    running = [t for t in described if t.get("lastStatus") != "STOPPED"]
    steps = []
    for task in running:
        arn = task["taskArn"]

        def stopped(outputs, arn=arn) -> tuple[bool, str]:
            found = ecs.describe_tasks(**cluster, tasks=[arn])["tasks"]
            left = [t for t in found if t.get("lastStatus") != "STOPPED"]
            return not left, f"{len(left)} task(s) stopping"

        stop = (
            [Call("ecs", "StopTask", {**cluster, "task": arn, "reason": "stack destroyed"})]
            if task.get("desiredStatus") != "STOPPED"
            else []
        )
        # A cluster with tasks still stopping refuses deletion (ClusterContainsTasks).
        wait = Wait(
            "smoke task stopped",
            stopped,
            deadline=STOP_SECONDS,
            interval=10,
            calls=(Call("ecs", "DescribeTasks", {**cluster, "tasks": [arn]}),),
        )
        steps.append(Step("smoke task", arn.rsplit("/", 1)[-1], "stop", instructions=[*stop, wait]))
    return steps
