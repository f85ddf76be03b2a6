"""The policy for applications that submit jobs from Python (ecs.policies.client_policy).

revoke() of a job waiting in a one-time schedule deletes that schedule
(tasks.results.control), so a client needs `scheduler:DeleteSchedule`, on the stack's
deferred-job schedules only. The oracles: the Service Authorization Reference (a schedule's
ARN is `arn:${Partition}:scheduler:${Region}:${Account}:schedule/${GroupName}/${ScheduleName}`;
DeleteSchedule's resource is that schedule), and the analysers parliament and cloudsplaining,
which must find nothing in it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest
from cloudsplaining.scan.policy_document import PolicyDocument

from ecs import policies
from tasks.ops.one_time_schedules import schedule_name
from tests.test_ecs_iam_analysers import IDS, STACKS, _escalations, _parliament


def actions(document: dict) -> dict[str, list[str]]:
    """action -> the resources allowing it."""
    found: dict[str, list[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        for action in statement["Action"]:
            found.setdefault(action, []).extend(
                resources if isinstance(resources, list) else [resources]
            )
    return found


def schedule_arn(stack, group: str, name: str) -> str:
    return (
        f"arn:{stack.partition}:scheduler:{stack.region}:{stack.account_id}:schedule/{group}/{name}"
    )


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_a_client_may_delete_only_the_stacks_deferred_job_schedules(stack):
    allowed = actions(policies.client_policy(stack))
    scheduler = {a for a in allowed if a.startswith("scheduler:")}
    assert scheduler == {"scheduler:DeleteSchedule"}  # only workers defer (CreateSchedule)
    (pattern,) = allowed["scheduler:DeleteSchedule"]

    def may_delete(group: str, name: str) -> bool:
        return fnmatchcase(schedule_arn(stack, group, name), pattern)

    deferred = schedule_name("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", 1)
    assert may_delete(stack.schedule_group, deferred)
    assert may_delete(stack.schedule_group, schedule_name("x" * 200))  # a hashed id
    assert not may_delete(stack.schedule_group, "nightly-report")  # a recurring schedule
    assert not may_delete("default", deferred)
    assert not may_delete(f"{stack.schedule_group}-other", deferred)
    assert "iam:PassRole" not in allowed


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_the_client_policy_names_the_stacks_resources_and_the_analysers_pass_it(stack):
    document = policies.client_policy(stack)
    for action, resources in actions(document).items():
        assert all(r.startswith(f"arn:{stack.partition}:") for r in resources), action
    assert _parliament(document) == set()
    assert _escalations(document, strict=True) == set()
    assert PolicyDocument(document).infrastructure_modification == []
    # What it adds to the API's own rights is the schedule's delete and the claim check.
    api = actions(policies.api_policy(stack))
    extra = set(actions(document)) - set(api)
    assert extra == {"scheduler:DeleteSchedule", "s3:PutObject", "dynamodb:BatchGetItem"}
