"""Every IAM policy `deploy` writes: exactly this stack's resources, no wildcard actions,
and a wildcard resource only where AWS offers nothing narrower."""

from __future__ import annotations

import pytest

from ecs import policies, roles
from ecs.stack import Options, Stack
from tests.test_ecs_deploy import ACCOUNT, REGION, aws, deployed, engine  # noqa: F401

BUCKET = f"arn:aws:s3:::t1-{ACCOUNT}-{REGION}-payloads"
# (action, resource) pairs where AWS needs a wildcard, and why.
REQUIRED_WILDCARDS = {
    # GetAuthorizationToken has no resource type: it is always "*".
    ("ecr:GetAuthorizationToken", "*"),
    # ECS names each task's log stream at run time; the streams of this group only.
    ("logs:CreateLogStream", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/t1:log-stream:*"),
    ("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/t1:log-stream:*"),
    # Task ids exist only at run time; the tasks of this cluster only.
    ("ecs:UpdateTaskProtection", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/*"),
    ("ecs:DescribeTasks", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/*"),
    # ECS Exec's Session Manager channels have no resource type.
    *{
        (f"ssmmessages:{a}", "*")
        for a in (
            "CreateControlChannel",
            "CreateDataChannel",
            "OpenControlChannel",
            "OpenDataChannel",
        )
    },
    # The claim check's objects are named by job id at run time: its two prefixes only.
    *{
        (f"s3:{a}", f"{BUCKET}/{prefix}/*")
        for a in ("GetObject", "PutObject", "DeleteObject")
        for prefix in ("results", "payloads")
    },
    # Deferred jobs' one-time schedules are named by job at run time: job-* of the group only.
    *{
        (f"scheduler:{a}", f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/t1-schedules/job-*")
        for a in ("CreateSchedule", "DeleteSchedule")
    },
}

QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:t1-jobs"
DLQ = f"arn:aws:sqs:{REGION}:{ACCOUNT}:t1-jobs-dlq"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t1-jobs"
SERVICE = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/t1/worker"


def _pairs(document: dict) -> set[tuple[str, str]]:
    pairs = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if isinstance(resources, str) else resources:
                pairs.add((action, resource))
    return pairs


def _assert_no_stray_wildcards(document: dict) -> None:
    for action, resource in _pairs(document):
        assert "*" not in action, f"wildcard action {action}"
        if "*" in resource:
            assert (action, resource) in REQUIRED_WILDCARDS, f"{action} on {resource}"


def _documents(stack: Stack) -> dict[str, dict]:
    return {name: policy for name, _, policy in policies.roles(stack)}


@pytest.mark.parametrize("enable_exec", [False, True])
def test_no_policy_has_a_wildcard_that_aws_does_not_require(enable_exec):
    stack = Stack("t1", REGION, ACCOUNT, Options(enable_exec=enable_exec))
    for document in _documents(stack).values():
        _assert_no_stray_wildcards(document)


def test_the_checker_catches_a_wildcard():
    loose = {"Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": QUEUE}]}
    with pytest.raises(AssertionError, match="wildcard action"):
        _assert_no_stray_wildcards(loose)
    broad = {"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}
    with pytest.raises(AssertionError):
        _assert_no_stray_wildcards(broad)


def test_deployed_roles_name_exactly_this_stacks_resources(aws, deployed):  # noqa: F811
    def inline(role):
        names = aws.iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert names == ["least-privilege"]
        assert aws.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        return aws.iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]

    task = inline("t1-task")
    _assert_no_stray_wildcards(task)
    assert _pairs(task) == {
        *{
            (f"sqs:{a}", QUEUE)
            for a in (
                "ReceiveMessage",
                "DeleteMessage",
                "SendMessage",
                "ChangeMessageVisibility",
                "GetQueueAttributes",
                "GetQueueUrl",
            )
        },
        ("sqs:GetQueueAttributes", DLQ),
        ("sqs:GetQueueUrl", DLQ),
        *{
            (f"dynamodb:{a}", TABLE)
            for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem")
        },
        ("ecs:UpdateTaskProtection", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/*"),
        # tasks.worker.protection reads its own task's deployment and its service's.
        ("ecs:DescribeTasks", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/*"),
        ("ecs:DescribeServices", SERVICE),
        *{
            (f"s3:{a}", f"{BUCKET}/{prefix}/*")
            for a in ("GetObject", "PutObject", "DeleteObject")
            for prefix in ("results", "payloads")
        },
        # tasks.worker.deferral: one-time schedules of the stack's group, the role they use.
        *{
            (f"scheduler:{a}", f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/t1-schedules/job-*")
            for a in ("CreateSchedule", "DeleteSchedule")
        },
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/t1-scheduler"),
    }
    api = inline("t1-apigateway")
    assert _pairs(api) == {
        ("sqs:SendMessage", QUEUE),
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:UpdateItem", TABLE),  # DELETE /jobs/{id}
        ("dynamodb:Query", f"{TABLE}/index/by_status"),  # GET /jobs
        ("s3:GetObject", f"{BUCKET}/results/*"),
    }  # GET /jobs/{id}/result
    execution = inline("t1-task-execution")
    _assert_no_stray_wildcards(execution)
    pull = {r for a, r in _pairs(execution) if a == "ecr:BatchGetImage"}
    assert pull == {f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/t1"}

    trust = {
        r: aws.iam.get_role(RoleName=r)["Role"]["AssumeRolePolicyDocument"]
        for r in ("t1-task", "t1-task-execution", "t1-apigateway")
    }
    assert trust["t1-task"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["t1-apigateway"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }


def test_a_loosened_policy_is_put_back(aws, deployed, engine):  # noqa: F811
    from tests.test_ecs_deploy import progress, run

    aws.iam.put_role_policy(
        RoleName="t1-task",
        PolicyName="least-privilege",
        PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", '
            '"Resource": "*"}]}'
        ),
    )
    code, output = run(aws, engine, "deploy")
    assert code == 0
    assert "updated    iam role                     t1-task  (permissions)" in output
    assert progress(output)["ecs service"] == "unchanged"
    document = aws.iam.get_role_policy(RoleName="t1-task", PolicyName="least-privilege")[
        "PolicyDocument"
    ]
    _assert_no_stray_wildcards(document)


def test_trust_policies_guard_against_the_confused_deputy(aws, deployed):  # noqa: F811
    """Each role may be assumed by its service on behalf of this account's resources in this
    region only (aws:SourceAccount and aws:SourceArn, as AWS recommends)."""
    expected = {
        "t1-task": ("ecs-tasks.amazonaws.com", f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"),
        "t1-task-execution": ("ecs-tasks.amazonaws.com", f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"),
        "t1-apigateway": ("apigateway.amazonaws.com", f"arn:aws:execute-api:{REGION}:{ACCOUNT}:*"),
    }
    for role, (service, source) in expected.items():
        (statement,) = aws.iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"][
            "Statement"
        ]
        assert statement["Principal"] == {"Service": service}
        assert statement["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": source},
        }


def test_a_trust_policy_without_the_conditions_is_put_back(aws, deployed, engine):  # noqa: F811
    import json

    from tests.test_ecs_deploy import run

    aws.iam.update_assume_role_policy(
        RoleName="t1-apigateway",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "apigateway.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert "updated    iam role                     t1-apigateway  (trust policy)" in output
    trust = aws.iam.get_role(RoleName="t1-apigateway")["Role"]["AssumeRolePolicyDocument"]
    assert "aws:SourceArn" in trust["Statement"][0]["Condition"]["ArnLike"]


@pytest.mark.parametrize(
    "region, partition, suffix",
    [
        ("eu-west-1", "aws", "amazonaws.com"),
        ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
        ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
    ],
)
def test_arns_and_endpoints_follow_the_partition(region, partition, suffix):
    import json

    from ecs.api import build_definition

    stack = Stack("t1", region, ACCOUNT)
    assert stack.partition == partition
    arns = [
        stack.queue_arn,
        stack.dlq_arn,
        stack.table_arn,
        stack.repository_arn,
        stack.log_group_arn,
        stack.cluster_arn,
        stack.task_arn_pattern,
        stack.role_arn(stack.task_role),
    ]
    assert all(a.startswith(f"arn:{partition}:") for a in arns), arns
    assert stack.queue_url.startswith(f"https://sqs.{region}.{suffix}/")
    assert stack.repository_uri.endswith(f".dkr.ecr.{region}.{suffix}/t1")
    assert stack.api_url("abc") == f"https://abc.execute-api.{region}.{suffix}/v1"
    documents = [policies.trust(service, stack) for _, service, _ in policies.roles(stack)]
    documents += [policy for _, _, policy in policies.roles(stack)]
    documents.append(build_definition(stack))
    text = json.dumps(documents)
    assert ("arn:aws:" in text) == (partition == "aws")
    assert f"arn:{partition}:apigateway:{region}:sqs:path/{ACCOUNT}/t1-jobs" in text


def test_a_deploy_in_china_names_no_aws_partition_arn(in_process_aws, monkeypatch, tmp_path):
    """Every request of a whole deploy to cn-north-1 (moto knows its partition): no ARN
    with the `aws` partition anywhere, the partition read from STS's caller identity."""
    from tests.test_ecs_deploy import (
        FakeAwsClients,
        FakeEngine,
        allow_fargate_tasks,
        allow_mock_integrations,
        build_inputs,
        run,
    )

    allow_mock_integrations(monkeypatch)
    allow_fargate_tasks(monkeypatch)
    china = FakeAwsClients("cn-north-1")
    assert china.partition() == "aws-cn"
    code, output = run(china, FakeEngine(china, root=build_inputs(tmp_path / "src")), "deploy")
    assert code == 0, output
    assert ".amazonaws.com.cn/" in output

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from strings(v)
        elif isinstance(value, bytes):
            yield value.decode()
        elif isinstance(value, str):
            yield value

    sent = [s for r in china.requests for s in strings(r.params)]
    assert any("arn:aws-cn:" in s for s in sent)
    assert [s for s in sent if "arn:aws:" in s] == []


# ---- the permissions boundary (issue 17: the deployer could make itself an administrator)

BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/t1-boundary"
STACK = Stack("t1", REGION, ACCOUNT)
STACK_ROLES = ("t1-task", "t1-task-execution", "t1-apigateway", "t1-scheduler")


def _boundary_of(aws, role: str) -> str | None:  # noqa: F811
    found = aws.iam.get_role(RoleName=role)["Role"].get("PermissionsBoundary") or {}
    return found.get("PermissionsBoundaryArn")


@pytest.fixture
def with_a_schedule(monkeypatch):
    """A job with a schedule, so that deploy makes the scheduler role as well."""
    from ecs import schedules as ecs_schedules
    from tasks.jobkit.schedules import Schedule

    monkeypatch.setattr(
        ecs_schedules,
        "deployed_schedules",
        lambda *_: {
            "hourly": Schedule(
                "rate(1 hour)", {"x": 1, "y": 2}, "hourly", "tasks.debug.add", "tasks.debug"
            )
        },
    )


def test_every_role_has_the_boundary_deploy_made_first(aws, engine, with_a_schedule):  # noqa: F811
    from tests.test_ecs_deploy import progress, run

    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert progress(output)["iam permissions boundary"] == "created"
    assert output.index("iam permissions boundary") < output.index("dynamodb table")
    made = [r["RoleName"] for r in aws.iam.list_roles()["Roles"] if r["RoleName"].startswith("t1-")]
    assert sorted(made) == sorted(STACK_ROLES)
    assert {role: _boundary_of(aws, role) for role in made} == dict.fromkeys(made, BOUNDARY)
    assert roles.boundary_document(aws.iam, BOUNDARY) == policies.boundary_policy(STACK)


# The steps alone, against moto: no whole deploy needed.


def _step(aws, step):  # noqa: F811
    from ecs.plan import Context

    return step(Context(aws, STACK, echo=lambda line: None))


def _apply(aws, step, echo=lambda line: None):  # noqa: F811
    from ecs.executor import Executor
    from ecs.plan import Context

    Executor(Context(aws, STACK, echo=echo)).run(step)


def test_a_role_without_the_boundary_or_with_another_gets_it_back(aws):  # noqa: F811
    _apply(aws, _step(aws, roles.plan_boundary))
    for role in ("t1-task", "t1-apigateway"):
        _apply(
            aws,
            _step(
                aws,
                lambda ctx, role=role: roles.plan_role(
                    ctx, role, policies.ECS_TASKS, policies.task_policy(STACK)
                ),
            ),
        )
    other = aws.iam.create_policy(
        PolicyName="wide",
        PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", '
            '"Resource": "*"}]}'
        ),
    )["Policy"]["Arn"]
    aws.iam.delete_role_permissions_boundary(RoleName="t1-task")  # made before the boundary
    aws.iam.put_role_permissions_boundary(RoleName="t1-apigateway", PermissionsBoundary=other)
    for role in ("t1-task", "t1-apigateway"):
        step = _step(
            aws,
            lambda ctx, role=role: roles.plan_role(
                ctx, role, policies.ECS_TASKS, policies.task_policy(STACK)
            ),
        )
        assert (step.action, step.detail) == ("update", "permissions boundary")
        before = len(aws.requests)
        _apply(aws, step)
        assert _boundary_of(aws, role) == BOUNDARY
        # first: the deployer may change a role only while the boundary is on it
        calls = [r.operation for r in aws.requests[before:]]
        assert calls.index("PutRolePermissionsBoundary") < calls.index("PutRolePolicy")


def test_a_changed_boundary_is_put_back_as_a_new_version(aws):  # noqa: F811
    """By an administrator's deploy: the deployer policy may not write the boundary."""
    import json

    _apply(aws, _step(aws, roles.plan_boundary))
    loose = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}],
    }
    for _ in range(4):  # IAM keeps five versions at most: deploy makes room
        aws.iam.create_policy_version(
            PolicyArn=BOUNDARY, PolicyDocument=json.dumps(loose), SetAsDefault=True
        )
    step = _step(aws, roles.plan_boundary)
    assert (step.action, step.detail) == ("update", "document differs")
    _apply(aws, step)
    assert roles.boundary_document(aws.iam, BOUNDARY) == policies.boundary_policy(STACK)
    assert _step(aws, roles.plan_boundary).action == "unchanged"


def test_without_the_boundary_a_deployer_is_told_who_makes_it(aws):  # noqa: F811
    """The deployer policy denies iam:CreatePolicy on the boundary: deploy stops (before it
    makes anything: the step comes first) and says who must create it, and how."""
    from botocore.exceptions import ClientError

    def refuse(**kwargs):
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "explicit deny"}}, "CreatePolicy"
        )

    aws.iam.meta.events.register("before-call.iam.CreatePolicy", refuse)
    step = _step(aws, roles.plan_boundary)
    assert step.action == "create"
    with pytest.raises(
        RuntimeError,
        match=f"the permissions boundary {BOUNDARY} is missing"
        r".*python -m ecs iam-policy --stack t1",
    ):
        _apply(aws, step)


def test_destroy_keeps_the_boundary_for_an_administrator(aws):  # noqa: F811
    _apply(aws, _step(aws, roles.plan_boundary))
    lines: list[str] = []
    step = _step(aws, roles.plan_delete_boundary)  # destroy's step for it
    assert (step.action, list(step.calls())) == ("kept", [])
    _apply(aws, step, lines.append)
    assert "  kept       iam permissions boundary     t1-boundary" in lines
    assert (
        f"  (an administrator deletes it: aws iam delete-policy --policy-arn {BOUNDARY})" in lines
    )
    assert roles.boundary_document(aws.iam, BOUNDARY) is not None


def test_iam_policy_writes_the_boundary_and_the_deployers_policies(tmp_path):
    import json
    from types import SimpleNamespace

    from ecs import deployer_policy
    from ecs.cli import main

    lines: list[str] = []
    offline = SimpleNamespace(region=REGION)  # with --account, nothing asks AWS
    code = main(
        ["iam-policy", "--stack", "t1", "--account", ACCOUNT, "--out", str(tmp_path)],
        clients=offline,
        echo=lines.append,
    )
    assert code == 0, lines
    written = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    from ecs.policies import client_policy

    assert written == {**deployer_policy.documents(STACK), "t1-client": client_policy(STACK)}
    assert sorted(written) == ["t1-boundary", "t1-client", "t1-deployer-1", "t1-deployer-2"]
    text = "\n".join(lines)
    for name in written:
        assert (
            f"aws iam create-policy --policy-name {name} "
            f"--policy-document file://{tmp_path}/{name}.json" in text
        )
    assert f"--policy-arn arn:aws:iam::{ACCOUNT}:policy/t1-deployer-2" in text
    assert f"--role-name APP_ROLE --policy-arn arn:aws:iam::{ACCOUNT}:policy/t1-client" in text
    code = main(
        ["iam-policy", "--stack", "t1", "--account", ACCOUNT], clients=offline, echo=lines.append
    )
    assert code == 0 and json.loads(lines[-1]) == written
