"""The deploy and destroy plans as data (ecs.plan, ecs.executor), under moto in process.

`destroy --dry-run` shows every resource destroy removes, with its calls, and changes
nothing; every mutating call a plan holds is one the deployer policy allows (the plan's
data checked against the IAM document an administrator gives the deployer).
"""

from __future__ import annotations

import pytest

from ecs import deploy, destroy
from ecs import schedules as ecs_schedules
from ecs.plan import Plan, Ref
from tests.test_ecs_deploy import (  # noqa: F401
    Request,
    _stack_resources,
    aws,
    deployed,
    engine,
    progress,
    run,
)
from tests.test_ecs_deployer_policy import (  # noqa: F401
    STACK,
    _administrator_creates_the_boundary,
    allowed,
    needs,
    policy,
    track_boundaries,
)

REMOVED = ("deleted", "stopped")


def _removals(output: str, verbs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(kind, name) of the step lines whose verb is one of `verbs`, in order."""
    return [
        (line[13:41].strip(), line[41:].split("  (")[0].strip())
        for line in output.splitlines()
        if line.split(None, 1)[:1] and line.split(None, 1)[0] in verbs and line.startswith("  ")
    ]


def test_destroy_dry_run_lists_every_resource_and_changes_nothing(aws, engine, deployed):  # noqa: F811
    before = _stack_resources(aws)
    first = len(aws.requests)
    code, dry = run(aws, engine, "destroy", "--dry-run", answer="not asked")
    assert code == 0, dry
    assert dry.splitlines()[0] == "plan to destroy stack t1 in us-east-1 (nothing is changed)"
    # nothing changed: only reads were sent, and everything is still there
    sent = {r.operation for r in aws.requests[first:]}
    assert sent and all(op.startswith(("Describe", "Get", "List", "Head")) for op in sent), sent
    assert _stack_resources(aws) == before
    # the calls are shown under each step, a value known only later as <name>
    assert "               ecs.DeleteService cluster=t1 service=worker force=True" in dry
    assert "               ecs.DeleteCluster cluster=t1" in dry
    assert "wait until service t1/worker draining:" in dry
    assert "  kept       iam permissions boundary     t1-boundary" in dry
    # what it listed is what destroy then deletes, resource for resource
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert _removals(dry, ("delete", "stop")) == _removals(output, REMOVED)
    assert f"{len(_removals(output, REMOVED))} resource(s) deleted" in output
    assert _stack_resources(aws) == []
    code, dry = run(aws, engine, "destroy", "--dry-run")
    assert code == 0 and _removals(dry, ("delete", "stop")) == [], dry
    assert dry.splitlines()[-1] == "nothing left to delete"


def test_plan_shows_its_calls_on_request(aws, engine):  # noqa: F811
    code, plain = run(aws, engine, "plan")
    assert code == 0 and "ecs.CreateCluster" not in plain
    code, output = run(aws, engine, "plan", "--calls")
    assert code == 0, output
    lines = output.splitlines()
    # a long call: its operation, then one parameter a line
    at = lines.index("               ecs.CreateCluster")
    assert lines[at + 1] == "                   clusterName=t1"
    # values an earlier call answers are references, resolved when deploy runs
    at = lines.index("               ecs.CreateService")
    assert "                   taskDefinition=<task_definition>" in lines[at : at + 12]
    at = lines.index("               apigateway.CreateUsagePlanKey")
    assert lines[at + 1 : at + 3] == [
        "                   usagePlanId=<usage_plan_id>",
        "                   keyId=<api_key_id>",
    ]
    assert plain.splitlines()[-1] == output.splitlines()[-1]  # the same summary
    assert _stack_resources(aws) == []


# Values of the references when a plan is checked against the policy (what AWS answers).
ANSWERS = {
    "task_definition": f"arn:aws:ecs:us-east-1:{STACK.account_id}:task-definition/t1-worker:1",
    "security_group": "sg-0123456789",
    "api_id": "a1b2c3d4e5",
    "deployment_id": "dep1",
    "api_key_id": "key1",
    "usage_plan_id": "plan1",
    "smoke_task": "0123abcd",
    "callback_secret_arn": STACK.callback_secret_arn_pattern.replace("??????", "AbCdEf"),
    "step_policy_arn": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x",
}


def _denied(aws, plan: Plan, policy: dict, boundaries: dict) -> tuple[list[str], set[str]]:  # noqa: F811
    """Mutating calls of the plan the policy does not allow, and the operations checked."""
    from ecs.executor import resolve

    outputs = {**ANSWERS, **{k: v for s in plan.steps for k, v in s.outputs.items()}}
    denied, checked = [], set()
    for step in plan.steps:
        for call in step.calls():
            if not call.mutating:
                continue
            client = aws.get(call.service)
            params = resolve(call.params, _Answers(outputs))
            request = Request(
                client.meta.service_model.service_name,
                call.operation,
                params,
                client.meta.service_model.operation_model(call.operation),
            )
            checked.add(call.operation)
            for action, arns, context in needs(request, boundaries):
                if not allowed(policy, action, arns, context):
                    denied.append(
                        f"{step.kind} {step.name}: {call.service}.{call.operation} "
                        f"needs {action} on {arns or '*'}"
                    )
            track_boundaries(request, boundaries)
    return denied, checked


class _Answers(dict):
    def __missing__(self, key: str) -> str:
        return f"unknown-{key}"


@pytest.fixture
def schedule(monkeypatch):
    from tasks.jobkit.schedules import Schedule

    declared = {
        "hourly": Schedule(
            "rate(1 hour)", {"x": 1, "y": 2}, "hourly", "tasks.debug.add", "tasks.debug"
        )
    }
    monkeypatch.setattr(ecs_schedules, "deployed_schedules", lambda *_: dict(declared))


def test_every_mutating_call_of_the_plans_is_one_the_deployer_policy_allows(
    aws,  # noqa: F811
    engine,  # noqa: F811
    policy,  # noqa: F811
    schedule,
):
    def plan(what: str) -> Plan:
        if what == "deploy":
            return deploy.make_plan(aws, STACK, engine.builder(), echo=print, clock=aws.time.clock)
        return destroy.make_plan(aws, STACK, echo=print, clock=aws.time.clock)

    # without the boundary, the plan writes it: the one call the deployer may never make
    denied, _ = _denied(aws, plan("deploy"), policy, {})
    assert denied and all("iam:CreatePolicy" in d for d in denied), denied

    _administrator_creates_the_boundary(aws)
    denied, created = _denied(aws, plan("deploy"), policy, {})
    assert denied == [], "\n".join(denied)
    assert {
        "CreateRole",
        "RegisterTaskDefinition",
        "CreateService",
        "PutRestApi",
        "CreateSchedule",
        "RunTask",
        "CreateSecret",
        "CreateTable",
    } <= created

    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    boundaries = {
        r["RoleName"]: r["PermissionsBoundary"]["PermissionsBoundaryArn"]
        for r in aws.iam.list_roles()["Roles"]
        if r.get("PermissionsBoundary")
    }
    denied, removed = _denied(aws, plan("destroy"), policy, boundaries)
    assert denied == [], "\n".join(denied)
    assert {
        "DeleteSchedule",
        "DeleteRestApi",
        "DeleteService",
        "DeregisterTaskDefinition",
        "DeleteSecurityGroup",
        "DeleteCluster",
        "DeleteRole",
        "DeleteQueue",
        "DeleteTable",
        "DeleteBucket",
        "DeleteSecret",
    } <= removed


def test_refs_are_resolved_where_they_stand():
    from ecs.executor import resolve

    params = {"a": Ref("api_id"), "ops": [{"value": Ref("api_id", "{}:v1")}], "n": 3}
    assert resolve(params, {"api_id": "x1"}) == {"a": "x1", "ops": [{"value": "x1:v1"}], "n": 3}
