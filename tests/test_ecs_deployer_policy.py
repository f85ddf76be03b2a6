"""ecs/deployer-policy.json, the IAM policy of whoever runs `python -m ecs` (rendered for the
stack by ecs.deployer_policy), against every call the commands make.

Every request of a whole session under moto (plan, deploy, redeploys that take each update
path, status, logs, dlq, redrive, destroy) is recorded with botocore's
`provide-client-params` hook on every client, turned into the IAM actions AWS checks for it
(with the ARNs the request acts on, the condition keys AWS fills in for it, and the actions
a request implies: tags on create, iam:PassRole), and each must be allowed by the document,
Deny statements included. A request whose ARN this test cannot name is checked against
`"Resource": "*"`, so it passes only where the document grants the action on everything.
The other way round, every action the document allows must be needed: seen in the session,
or listed below with the reason moto cannot show it.
"""

from __future__ import annotations

import json
import re

import pytest

from ecs import deployer_policy, policies
from ecs import schedules as ecs_schedules
from ecs.policies import API_GATEWAY, ECS_TASKS, SCHEDULER
from ecs.stack import Stack
from tests.test_ecs_deploy import ACCOUNT, REGION, Request, aws, engine, progress, run  # noqa: F401
from tests.test_ecs_observe import _celery_body

STACK = Stack("t1", REGION, ACCOUNT)
BOUNDARY = policies.boundary_arn(STACK)
# An id AWS assigns to a scalable target when it is registered (its ARN ends with it).
SCALABLE_TARGET = f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/0e1f2a3b"

# In the document, but not a boto3 call of the session: why each is there.
NOT_BOTO3_CALLS = {
    # docker/podman push and its layer checks, with the token of ecr:GetAuthorizationToken
    **{
        f"ecr:{a}": "docker push"
        for a in (
            "BatchCheckLayerAvailability",
            "BatchGetImage",
            "CompleteLayerUpload",
            "GetDownloadUrlForLayer",
            "InitiateLayerUpload",
            "PutImage",
            "UploadLayerPart",
        )
    },
    # ECS and Application Auto Scaling create their service-linked roles, as the caller, on
    # an account's first cluster and first scalable target
    "iam:CreateServiceLinkedRole": "first cluster / scalable target of an account",
    # the older name of logs:TagResource for tags given to CreateLogGroup
    "logs:TagLogGroup": "tag on create (older action name)",
    # deploy adds the listing index to a table made before it (the session's table has it)
    "dynamodb:UpdateTable": "a jobs table from before the listing index",
    # deploy turns Container Insights back on with it; moto has no UpdateClusterSettings
    "ecs:UpdateClusterSettings": "not implemented by moto",
    # destroy empties a bucket that holds objects or unfinished uploads (the session's is empty)
    "s3:DeleteObject": "destroy of a bucket with objects",
    "s3:AbortMultipartUpload": "destroy of a bucket with unfinished uploads",
}

# S3's IAM actions are not all named as its API calls.
S3_ACTIONS = {
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",
}

# Tags given at creation need the service's tagging action as well.
TAG_ACTIONS = {
    ("sqs", "CreateQueue"): "sqs:TagQueue",
    ("dynamodb", "CreateTable"): "dynamodb:TagResource",
    ("iam", "CreateRole"): "iam:TagRole",
    ("ecr", "CreateRepository"): "ecr:TagResource",
    ("logs", "CreateLogGroup"): "logs:TagResource",
    ("cloudwatch", "PutMetricAlarm"): "cloudwatch:TagResource",
    ("ec2", "CreateSecurityGroup"): "ec2:CreateTags",
    ("application-autoscaling", "RegisterScalableTarget"): "application-autoscaling:TagResource",
    ("scheduler", "CreateScheduleGroup"): "scheduler:TagResource",
    ("secretsmanager", "CreateSecret"): "secretsmanager:TagResource",
    **{
        ("ecs", op): "ecs:TagResource"
        for op in ("CreateCluster", "CreateService", "RegisterTaskDefinition", "RunTask")
    },
}
TAG_PARAMS = ("tags", "Tags", "TagSpecifications")
# The condition key AWS sets to the role's boundary on the calls that change a role
# (the Service Authorization Reference's iam:PermissionsBoundary): the new one where the
# call sets it, else the one the role has.
BOUNDARY_SET = ("CreateRole", "PutRolePermissionsBoundary")
BOUNDARY_HELD = (
    "AttachRolePolicy",
    "DeleteRole",
    "DeleteRolePolicy",
    "DetachRolePolicy",
    "GetRole",
    "PutRolePolicy",
    "UpdateAssumeRolePolicy",
)
# ECS requests on the cluster's resources carry ecs:cluster.
ECS_IN_CLUSTER = (
    "CreateService",
    "DeleteService",
    "DescribeServices",
    "DescribeTasks",
    "ListTasks",
    "RunTask",
    "StopTask",
    "UpdateService",
)


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def _apigateway_path(request: Request) -> str:
    path = request.model.http["requestUri"].split("?", 1)[0]
    for name, shape in request.model.input_shape.members.items():
        if shape.serialization.get("location") == "uri" and name in request.params:
            location = shape.serialization.get("name", name)
            path = path.replace("{" + location + "}", str(request.params[name]))
    return path


def _ecs(kind: str, name: str, cluster: str = "") -> str:
    """The ARN ECS gives a resource named by name (or already by ARN) in a request."""
    if name.startswith("arn:"):
        return name
    if kind == "task-definition":
        family, _, revision = name.partition(":")
        name = f"{family}:{revision or '1'}"
    elif kind in ("service", "task"):
        name = f"{cluster.rsplit('/', 1)[-1]}/{name}"
    return _arn("ecs", f"{kind}/{name}")


def _ecs_resources(request: Request) -> list[str] | None:
    p, op = request.params, request.operation
    cluster = p.get("cluster", "")
    if op == "CreateCluster":
        return [_ecs("cluster", p["clusterName"])]
    if op == "DescribeClusters":
        return [_ecs("cluster", c) for c in p["clusters"]]
    if op in ("DeleteCluster", "PutClusterCapacityProviders", "UpdateClusterSettings"):
        return [_ecs("cluster", cluster)]
    if op in ("CreateService", "UpdateService", "DeleteService", "DescribeServices"):
        names = p.get("services") or [p.get("serviceName") or p["service"]]
        return [_ecs("service", n, cluster) for n in names]
    if op == "RegisterTaskDefinition":  # the new revision's ARN
        return [_ecs("task-definition", p["family"])]
    if op == "RunTask":
        return [_ecs("task-definition", p["taskDefinition"])]
    if op == "DeleteTaskDefinitions":
        return [_ecs("task-definition", t) for t in p["taskDefinitions"]]
    if op in ("DescribeTasks", "StopTask"):
        return [_ecs("task", t, cluster) for t in p.get("tasks") or [p["task"]]]
    # ListTasks names no container instance, and the task definition lookups have no
    # resource type: AWS checks these against "*".
    return None


def resources(request: Request) -> list[str] | None:
    """The ARNs a request acts on, where its parameters name them (None: "*")."""
    p, service = request.params, request.service
    if service == "sqs":
        name = p.get("QueueName") or p.get("QueueUrl", "").rsplit("/", 1)[-1]
        return [_arn("sqs", name)] if name else None
    if service == "dynamodb" and "TableName" in p:
        index = f"/index/{p['IndexName']}" if "IndexName" in p else ""
        return [_arn("dynamodb", f"table/{p['TableName']}{index}")]
    if service == "iam" and "RoleName" in p:
        return [f"arn:aws:iam::{ACCOUNT}:role/{p['RoleName']}"]
    if service == "iam" and ("PolicyArn" in p or "PolicyName" in p):
        return [p.get("PolicyArn") or f"arn:aws:iam::{ACCOUNT}:policy/{p['PolicyName']}"]
    if service == "ecr":
        names = p.get("repositoryNames") or (
            [p["repositoryName"]] if "repositoryName" in p else None
        )
        return [_arn("ecr", f"repository/{n}") for n in names] if names else None
    if service == "logs":
        name = p.get("logGroupName")
        return [_arn("logs", f"log-group:{name}")] if name else None
    if service == "cloudwatch":
        names = p.get("AlarmNames") or ([p["AlarmName"]] if "AlarmName" in p else None)
        return [_arn("cloudwatch", f"alarm:{n}") for n in names] if names else None
    if service == "apigateway":
        return [f"arn:aws:apigateway:{REGION}::{_apigateway_path(request)}"]
    if service == "ec2" and request.operation == "CreateSecurityGroup":
        return [_arn("ec2", "security-group/sg-new"), _arn("ec2", f"vpc/{p['VpcId']}")]
    if service == "ec2" and request.operation == "DeleteSecurityGroup":
        return [_arn("ec2", f"security-group/{p['GroupId']}")]
    if service == "s3" and "Bucket" in p:
        bucket = f"arn:aws:s3:::{p['Bucket']}"
        return (
            [f"{bucket}/*"]
            if request.operation in ("DeleteObjects", "AbortMultipartUpload")
            else [bucket]
        )
    if service == "scheduler" and request.operation.endswith("ScheduleGroup"):
        return [_arn("scheduler", f"schedule-group/{p['Name']}")]
    if service == "scheduler" and request.operation.endswith("Schedule"):
        return [_arn("scheduler", f"schedule/{p.get('GroupName', 'default')}/{p['Name']}")]
    if service == "secretsmanager":  # a secret's ARN ends in "-" and six random characters
        return [_arn("secretsmanager", f"secret:{p.get('SecretId') or p['Name']}-AbCdEf")]
    if service == "ecs":
        return _ecs_resources(request)
    if (
        service == "application-autoscaling"
        and "ScalableDimension" in p
        and not request.operation.startswith("Describe")
    ):
        return [SCALABLE_TARGET]
    return None


def _context(request: Request, boundaries: dict[str, str]) -> dict:
    """The condition keys AWS puts in the request context for this request."""
    service, op, p = request.service, request.operation, request.params
    context: dict = {}
    if service == "ec2" and op == "DeleteSecurityGroup":
        context = {"ec2:ResourceTag/stack": STACK.name}  # deploy tags the group it makes
    if service == "iam" and op in BOUNDARY_SET and p.get("PermissionsBoundary"):
        context["iam:PermissionsBoundary"] = p["PermissionsBoundary"]
    if service == "iam" and op in BOUNDARY_HELD and p["RoleName"] in boundaries:
        context["iam:PermissionsBoundary"] = boundaries[p["RoleName"]]
    if service == "ecs" and op in ECS_IN_CLUSTER:
        context["ecs:cluster"] = _ecs("cluster", p["cluster"])
    if service == "ecs" and op in ("CreateService", "UpdateService") and p.get("taskDefinition"):
        context["ecs:task-definition"] = _ecs("task-definition", p["taskDefinition"])
    if service == "application-autoscaling" and "ServiceNamespace" in p:
        context["application-autoscaling:service-namespace"] = p["ServiceNamespace"]
        if "ScalableDimension" in p:
            context["application-autoscaling:scalable-dimension"] = p["ScalableDimension"]
    return context


def _tag_context(request: Request) -> tuple[list[str] | None, dict]:
    """What tag-on-create is checked against: the new resource, and the create action."""
    service, op, p = request.service, request.operation, request.params
    if service == "ecs":
        made = (
            _ecs("task", "new-task", p["cluster"])
            if op == "RunTask"
            else _ecs_resources(request)[0]
        )
        return [made], {"ecs:CreateAction": op}
    if service == "iam":
        return resources(request), {"aws:TagKeys": [t["Key"] for t in p["Tags"]]}
    made = resources(request)  # the tags go on what is made, not on its VPC
    return (made[:1] if made else None), ({"ec2:CreateAction": op} if service == "ec2" else {})


def needs(request: Request, boundaries: dict[str, str]) -> list[tuple[str, list[str] | None, dict]]:
    """(IAM action, resources or None, condition context) AWS checks for a request;
    `boundaries` is each role's permissions boundary before the request."""
    service, op, p = request.service, request.operation, request.params
    if service == "apigateway":
        action = f"apigateway:{request.model.http['method']}"
    elif service == "s3":
        action = S3_ACTIONS.get(op, f"s3:{op}")
    else:
        action = f"{service}:{op}"
    out = [(action, resources(request), _context(request, boundaries))]
    if (service, op) in TAG_ACTIONS and any(p.get(k) for k in TAG_PARAMS):
        out.append((TAG_ACTIONS[service, op], *_tag_context(request)))
    if service == "s3" and op == "CreateBucket" and p.get("ObjectOwnership"):
        out.append(("s3:PutBucketOwnershipControls", resources(request), {}))
    if service == "apigateway" and p.get("tags"):
        out.append(("apigateway:PUT", [f"arn:aws:apigateway:{REGION}::/tags/x"], {}))
    passed = [p[k] for k in ("taskRoleArn", "executionRoleArn") if p.get(k)]
    if op == "RunTask":  # the task definition's roles
        passed = [STACK.role_arn(STACK.task_role), STACK.role_arn(STACK.execution_role)]
    if passed:
        out.append(("iam:PassRole", passed, {"iam:PassedToService": ECS_TASKS}))
    if service == "scheduler" and op in ("CreateSchedule", "UpdateSchedule"):
        out.append(("iam:PassRole", [p["Target"]["RoleArn"]], {"iam:PassedToService": SCHEDULER}))
    if op == "PutRestApi":
        body = json.loads(p["body"])
        roles = {
            i["x-amazon-apigateway-integration"]["credentials"]
            for path in body["paths"].values()
            for i in path.values()
            if i.get("x-amazon-apigateway-integration", {}).get("credentials")
        }
        out.append(("iam:PassRole", sorted(roles), {"iam:PassedToService": API_GATEWAY}))
    return out


def track_boundaries(request: Request, boundaries: dict[str, str]) -> None:
    """What a request (the deployer's or the test's own) does to the roles' boundaries."""
    p, op = request.params, request.operation
    if request.service != "iam":
        return
    if op in BOUNDARY_SET and p.get("PermissionsBoundary"):
        boundaries[p["RoleName"]] = p["PermissionsBoundary"]
    elif op in ("DeleteRolePermissionsBoundary", "DeleteRole"):
        boundaries.pop(p["RoleName"], None)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str) -> bool:
    """IAM's wildcards: `*` any run of characters (across ':' and '/'), `?` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _condition_holds(statement: dict, context: dict) -> bool:
    """IAM's rules for the operators the document uses: keys AND-ed, values OR-ed; a key
    missing from the request makes a condition false, and a negated one true."""
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            values, have = _listed(values), context.get(key)
            if operator == "ForAllValues:StringEquals":
                holds = all(v in values for v in _listed(have or []))
            elif operator in ("StringEquals", "ArnEquals"):
                holds = have is not None and have in values
            elif operator == "ArnLike":
                holds = have is not None and any(_matches(v, have) for v in values)
            elif operator in ("StringNotEquals", "ArnNotEquals"):
                holds = have is None or have not in values
            else:
                raise AssertionError(f"the checker does not know {operator}")
            if not holds:
                return False
    return True


def allowed(policy: dict, action: str, arns: list[str] | None, context: dict) -> bool:
    """Allowed by some Allow statement and denied by no Deny, on every ARN; a request whose
    ARN is not known (None) needs `"Resource": "*"`."""

    def applies(statement: dict, arn: str) -> bool:
        return (
            action in _listed(statement["Action"])
            and any(_matches(r, arn) for r in _listed(statement["Resource"]))
            and _condition_holds(statement, context)
        )

    for arn in arns or ["*"]:
        if any(applies(s, arn) for s in policy["Statement"] if s["Effect"] == "Deny"):
            return False
        if not any(applies(s, arn) for s in policy["Statement"] if s["Effect"] == "Allow"):
            return False
    return True


def allowed_actions(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _listed(s["Action"])}


@pytest.fixture(scope="module")
def policy() -> dict:
    return deployer_policy.render(STACK)


def test_the_document_has_no_wildcard_action_and_denies_only_boundary_changes(policy):
    denies = []
    for statement in policy["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny")
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        for action in _listed(statement["Action"]):
            assert "*" not in action and "?" not in action, action
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action
        if statement["Effect"] == "Deny":
            denies += _listed(statement["Action"])
    assert set(denies) == {
        "iam:AttachRolePolicy",
        "iam:CreateRole",
        "iam:PutRolePermissionsBoundary",
        "iam:PutRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:DeleteRolePermissionsBoundary",
        "iam:CreatePolicy",
        "iam:CreatePolicyVersion",
        "iam:DeletePolicy",
        "iam:DeletePolicyVersion",
        "iam:SetDefaultPolicyVersion",
    }


def test_the_checker_rejects_what_the_document_does_not_allow(policy):
    role = f"arn:aws:iam::{ACCOUNT}:role/t1-task"
    assert not allowed(policy, "sqs:PurgeQueue", [_arn("sqs", "t1-jobs")], {})
    assert not allowed(policy, "sqs:SendMessage", [_arn("sqs", "someone-elses-queue")], {})
    assert not allowed(policy, "sqs:SendMessage", [_arn("sqs", "t2-jobs")], {})  # another stack
    assert not allowed(
        policy, "iam:PassRole", [role], {"iam:PassedToService": "lambda.amazonaws.com"}
    )
    assert not allowed(
        policy,
        "iam:PassRole",
        [f"arn:aws:iam::{ACCOUNT}:role/t1-apigateway"],
        {"iam:PassedToService": ECS_TASKS},
    )
    assert not allowed(
        policy,
        "ec2:DeleteSecurityGroup",
        [_arn("ec2", "security-group/sg-1")],
        {"ec2:ResourceTag/stack": "other"},
    )
    # roles only with the stack's boundary; the boundary neither removed nor changed
    other = f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess"
    assert not allowed(policy, "iam:CreateRole", [role], {})
    assert not allowed(policy, "iam:CreateRole", [role], {"iam:PermissionsBoundary": other})
    assert not allowed(policy, "iam:PutRolePolicy", [role], {})
    assert not allowed(
        policy, "iam:PutRolePermissionsBoundary", [role], {"iam:PermissionsBoundary": other}
    )
    assert not allowed(
        policy, "iam:DeleteRolePermissionsBoundary", [role], {"iam:PermissionsBoundary": BOUNDARY}
    )
    assert not allowed(policy, "iam:CreatePolicyVersion", [BOUNDARY], {})
    assert not allowed(policy, "iam:CreatePolicy", [BOUNDARY], {})
    assert not allowed(policy, "iam:TagRole", [role], {"aws:TagKeys": ["admin"]})
    # ECS: this stack's cluster, service and task definitions only
    assert not allowed(
        policy,
        "ecs:RunTask",
        [_ecs("task-definition", "other:1")],
        {"ecs:cluster": _ecs("cluster", "t1")},
    )
    assert not allowed(
        policy,
        "ecs:RunTask",
        [_ecs("task-definition", "t1-worker:1")],
        {"ecs:cluster": _ecs("cluster", "other")},
    )
    assert not allowed(
        policy,
        "ecs:UpdateService",
        [_ecs("service", "worker", "t1")],
        {"ecs:task-definition": _ecs("task-definition", "other:3")},
    )
    assert not allowed(policy, "ecs:ListTasks", None, {"ecs:cluster": _ecs("cluster", "x")})
    assert not allowed(policy, "ecs:RegisterTaskDefinition", None, {})
    assert not allowed(policy, "ecr:PutImage", [_arn("ecr", "repository/other")], {})
    assert allowed(policy, "sqs:SendMessage", [_arn("sqs", "t1-jobs")], {})
    assert allowed(policy, "iam:PutRolePolicy", [role], {"iam:PermissionsBoundary": BOUNDARY})


def _administrator_creates_the_boundary(aws) -> None:  # noqa: F811
    """As docs/deploy.md says, before the first deploy (a client of its own: not recorded)."""
    import boto3

    iam = boto3.client("iam", region_name=REGION, endpoint_url=aws._endpoint)
    iam.create_policy(
        PolicyName=policies.boundary_name(STACK),
        PolicyDocument=json.dumps(policies.boundary_policy(STACK)),
    )


def _session(aws, engine, schedules: dict) -> list[tuple[Request, bool]]:  # noqa: F811
    """Every command, and every update path deploy has, once: (request, made by the test)."""
    from tasks.jobkit.schedules import Schedule

    def declare(*names: str) -> None:  # the job modules' schedules, as `deploy` finds them
        schedules.clear()
        schedules.update(
            {
                n: Schedule("rate(1 hour)", {"x": 1, "y": 2}, n, "tasks.debug.add", "tasks.debug")
                for n in names
            }
        )

    _administrator_creates_the_boundary(aws)
    declare("kept", "removed")
    steps = [["plan"], ["deploy"], ["deploy"]]
    for argv in steps:
        code, output = run(aws, engine, *argv)
        assert code == 0, output
    # the drifts deploy puts right, each through its update call
    url = aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"]
    aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30"})
    aws.ecr.put_image_scanning_configuration(
        repositoryName="t1", imageScanningConfiguration={"scanOnPush": False}
    )
    aws.iam.update_assume_role_policy(
        RoleName="t1-task",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {  # no confused-deputy condition
                        "Effect": "Allow",
                        "Principal": {"Service": ECS_TASKS},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    aws.ecs.put_cluster_capacity_providers(
        cluster="t1", capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[]
    )
    aws.iam.delete_role_permissions_boundary(RoleName="t1-apigateway")  # a role from before
    (engine.root / "tasks" / "reports.py").write_text("JOBS = []\n")
    declare("kept", "added")  # a schedule deleted, one created
    aws.scheduler.update_schedule(
        Name="kept",
        GroupName="t1-schedules",  # and one drifted: updated
        ScheduleExpression="rate(2 hours)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": STACK.queue_arn, "RoleArn": STACK.role_arn(STACK.scheduler_role)},
    )
    code, output = run(
        aws,
        engine,
        "deploy",
        "--log-retention",
        "30",
        "--max-tasks",
        "5",
        "--seconds-per-job",
        "4",
        "--max-message-age",
        "300",
    )
    assert code == 0, output
    changed = progress(output)
    assert {
        changed[k]
        for k in (
            "sqs queue and dlq",
            "ecr repository",
            "ecs cluster",
            "ecs service",
            "cloudwatch log group",
        )
    } == {"updated"}, output
    assert "t1-apigateway  (permissions boundary)" in output
    # the operator's commands, with something to show
    dlq = aws.sqs.get_queue_url(QueueName="t1-jobs-dlq")["QueueUrl"]
    aws.sqs.send_message(QueueUrl=dlq, MessageBody=_celery_body("tasks.debug.fail", "id-1"))
    for argv in (["status"], ["logs"], ["dlq"], ["redrive"]):
        code, output = run(aws, engine, *argv)
        assert code == 0, output
    # someone attached a managed policy to a stack role: destroy detaches it
    made = aws.iam.create_policy(
        PolicyName="extra",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
            }
        ),
    )
    aws.iam.attach_role_policy(RoleName="t1-task", PolicyArn=made["Policy"]["Arn"])
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    # the test's own setup calls above are not the deployer's
    return [
        (r, r.operation in TAMPERING and TAMPERING[r.operation](r.params)) for r in aws.requests
    ]


# The test's own calls, told from the deployer's by what they send (deploy sends the
# wanted values back; redrive sends to the work queue; nothing of ours attaches policies).
TAMPERING = {
    "SetQueueAttributes": lambda p: p.get("Attributes") == {"VisibilityTimeout": "30"},
    "PutImageScanningConfiguration": lambda p: (
        p["imageScanningConfiguration"] == {"scanOnPush": False}
    ),
    "UpdateAssumeRolePolicy": lambda p: "Condition" not in p["PolicyDocument"],
    "PutClusterCapacityProviders": lambda p: p["capacityProviders"] == ["FARGATE"],
    "SendMessage": lambda p: p["QueueUrl"].endswith("-dlq"),
    "CreatePolicy": lambda p: p["PolicyName"] == "extra",
    "UpdateSchedule": lambda p: p["ScheduleExpression"] == "rate(2 hours)",
    "AttachRolePolicy": lambda p: True,
    "DeleteRolePermissionsBoundary": lambda p: True,
}


def test_every_call_of_every_command_is_allowed_and_every_action_is_needed(
    aws,  # noqa: F811
    engine,  # noqa: F811
    policy,
    monkeypatch,
):
    schedules: dict = {}
    monkeypatch.setattr(ecs_schedules, "deployed_schedules", lambda *_: dict(schedules))
    denied, used, boundaries = [], set(), {}
    for request, by_the_test in _session(aws, engine, schedules):
        for action, arns, context in [] if by_the_test else needs(request, boundaries):
            used.add(action)
            if not allowed(policy, action, arns, context):
                denied.append(
                    f"{request.service}.{request.operation} needs {action} on "
                    f"{arns or '*'} with {context}"
                )
        track_boundaries(request, boundaries)
    assert denied == [], "\n".join(sorted(set(denied)))

    in_document = allowed_actions(policy)
    assert set(NOT_BOTO3_CALLS) <= in_document
    unused = in_document - used - set(NOT_BOTO3_CALLS)
    assert unused == set(), f"in the document but never needed: {sorted(unused)}"
    # the session did go through the paths that matter
    assert {
        "ecs:RunTask",
        "ecs:StopTask",
        "ecs:UpdateService",
        "sqs:SetQueueAttributes",
        "iam:UpdateAssumeRolePolicy",
        "iam:DetachRolePolicy",
        "iam:PassRole",
        "apigateway:PUT",
        "apigateway:PATCH",
        "apigateway:DELETE",
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:DeleteScheduleGroup",
        "iam:PutRolePermissionsBoundary",
        "iam:GetPolicyVersion",
        "ecs:TagResource",
    } <= used
