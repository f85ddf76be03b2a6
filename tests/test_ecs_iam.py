"""Every IAM policy `deploy` writes: exactly this stack's resources, no wildcard actions,
and a wildcard resource only where AWS offers nothing narrower."""

from __future__ import annotations

import pytest

from ecs import policies
from ecs.stack import Options, Stack
from tests.test_ecs_deploy import ACCOUNT, REGION, aws, deployed, engine  # noqa: F401

# (action, resource) pairs where AWS needs a wildcard, and why.
REQUIRED_WILDCARDS = {
    # GetAuthorizationToken has no resource type: it is always "*".
    ("ecr:GetAuthorizationToken", "*"),
    # ECS names each task's log stream at run time; the streams of this group only.
    ("logs:CreateLogStream", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/t1:log-stream:*"),
    ("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/t1:log-stream:*"),
    # Task ids exist only at run time; the tasks of this cluster only.
    ("ecs:UpdateTaskProtection", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/*"),
    # ECS Exec's Session Manager channels have no resource type.
    *{(f"ssmmessages:{a}", "*") for a in ("CreateControlChannel", "CreateDataChannel",
                                          "OpenControlChannel", "OpenDataChannel")},
}

QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:t1-jobs"
DLQ = f"arn:aws:sqs:{REGION}:{ACCOUNT}:t1-jobs-dlq"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t1-jobs"


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
        *{(f"sqs:{a}", QUEUE) for a in ("ReceiveMessage", "DeleteMessage", "SendMessage",
                                        "ChangeMessageVisibility", "GetQueueAttributes",
                                        "GetQueueUrl")},
        ("sqs:GetQueueAttributes", DLQ), ("sqs:GetQueueUrl", DLQ),
        *{(f"dynamodb:{a}", TABLE) for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem",
                                             "BatchGetItem")},
        ("ecs:UpdateTaskProtection", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/t1/*"),
    }
    api = inline("t1-apigateway")
    assert _pairs(api) == {("sqs:SendMessage", QUEUE), ("dynamodb:GetItem", TABLE)}
    execution = inline("t1-task-execution")
    _assert_no_stray_wildcards(execution)
    pull = {r for a, r in _pairs(execution) if a == "ecr:BatchGetImage"}
    assert pull == {f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/t1"}

    trust = {r: aws.iam.get_role(RoleName=r)["Role"]["AssumeRolePolicyDocument"]
             for r in ("t1-task", "t1-task-execution", "t1-apigateway")}
    assert trust["t1-task"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["t1-apigateway"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"}


def test_a_loosened_policy_is_put_back(aws, deployed, engine):  # noqa: F811
    from tests.test_ecs_deploy import progress, run

    aws.iam.put_role_policy(RoleName="t1-task", PolicyName="least-privilege", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", '
        '"Resource": "*"}]}'))
    code, output = run(aws, engine, "deploy")
    assert code == 0
    assert "updated    iam role                     t1-task  (permissions)" in output
    assert progress(output)["ecs service"] == "unchanged"
    document = aws.iam.get_role_policy(RoleName="t1-task",
                                       PolicyName="least-privilege")["PolicyDocument"]
    _assert_no_stray_wildcards(document)
