"""ecs/deployer-policy.json, the IAM policy of whoever runs `python -m ecs`, against every
call the commands make.

Every request of a whole session under moto (plan, deploy, redeploys that take each update
path, status, logs, dlq, redrive, destroy) is recorded with botocore's
`provide-client-params` hook on every client, turned into the IAM actions AWS checks for it
(with the resource where the request names one, and the actions a request implies: tags on
create, iam:PassRole), and each must be allowed by the document. The other way round, every
action in the document must be needed: seen in the session, or listed below with the reason
moto cannot show it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ecs import schedules as ecs_schedules
from ecs.policies import API_GATEWAY, ECS_TASKS, SCHEDULER
from ecs.stack import Stack
from tests.test_ecs_deploy import ACCOUNT, REGION, Request, aws, engine, progress, run  # noqa: F401
from tests.test_ecs_observe import _celery_body

POLICY = Path(__file__).resolve().parent.parent / "ecs" / "deployer-policy.json"
STACK = Stack("t1", REGION, ACCOUNT)

# In the document, but not a boto3 call of the session: why each is there.
NOT_BOTO3_CALLS = {
    # docker/podman push and its layer checks, with the token of ecr:GetAuthorizationToken
    **{f"ecr:{a}": "docker push" for a in (
        "BatchCheckLayerAvailability", "BatchGetImage", "CompleteLayerUpload",
        "GetDownloadUrlForLayer", "InitiateLayerUpload", "PutImage", "UploadLayerPart")},
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
    "HeadBucket": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads", "DeleteObjects": "s3:DeleteObject",
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
    **{("ecs", op): "ecs:TagResource" for op in (
        "CreateCluster", "CreateService", "RegisterTaskDefinition", "RunTask")},
}
TAG_PARAMS = ("tags", "Tags", "TagSpecifications")


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def _apigateway_path(request: Request) -> str:
    path = request.model.http["requestUri"].split("?", 1)[0]
    for name, shape in request.model.input_shape.members.items():
        if shape.serialization.get("location") == "uri" and name in request.params:
            location = shape.serialization.get("name", name)
            path = path.replace("{" + location + "}", str(request.params[name]))
    return path


def resources(request: Request) -> list[str] | None:
    """The ARNs a request acts on, where its parameters name them (None: not derived)."""
    p, service = request.params, request.service
    if service == "sqs":
        name = p.get("QueueName") or p.get("QueueUrl", "").rsplit("/", 1)[-1]
        return [_arn("sqs", name)] if name else None
    if service == "dynamodb" and "TableName" in p:
        index = f"/index/{p['IndexName']}" if "IndexName" in p else ""
        return [_arn("dynamodb", f"table/{p['TableName']}{index}")]
    if service == "iam" and "RoleName" in p:
        return [f"arn:aws:iam::{ACCOUNT}:role/{p['RoleName']}"]
    if service == "ecr":
        names = p.get("repositoryNames") or ([p["repositoryName"]]
                                             if "repositoryName" in p else None)
        return [_arn("ecr", f"repository/{n}") for n in names] if names else None
    if service == "logs":
        name = p.get("logGroupName")
        return [_arn("logs", f"log-group:{name}")] if name else [_arn("logs", "log-group:x")]
    if service == "cloudwatch" and request.operation != "DescribeAlarms":
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
        return [f"{bucket}/*"] if request.operation in ("DeleteObjects",
                                                        "AbortMultipartUpload") else [bucket]
    if service == "scheduler" and request.operation.endswith("ScheduleGroup"):
        return [_arn("scheduler", f"schedule-group/{p['Name']}")]
    if service == "scheduler" and request.operation.endswith("Schedule"):
        return [_arn("scheduler", f"schedule/{p.get('GroupName', 'default')}/{p['Name']}")]
    if service == "secretsmanager":  # a secret's ARN ends in "-" and six random characters
        return [_arn("secretsmanager", f"secret:{p.get('SecretId') or p['Name']}-AbCdEf")]
    return None


def needs(request: Request) -> list[tuple[str, list[str] | None, dict]]:
    """(IAM action, resources or None, condition context) AWS checks for a request."""
    service, op, p = request.service, request.operation, request.params
    if service == "apigateway":
        action = f"apigateway:{request.model.http['method']}"
    elif service == "s3":
        action = S3_ACTIONS.get(op, f"s3:{op}")
    else:
        action = f"{service}:{op}"
    context = {}
    if service == "ec2" and op == "DeleteSecurityGroup":
        context = {"ec2:ResourceTag/app": "sqs-jobs"}  # deploy tags the group it makes
    out = [(action, resources(request), context)]
    if (service, op) in TAG_ACTIONS and any(p.get(k) for k in TAG_PARAMS):
        tag_context = {"ec2:CreateAction": op} if service == "ec2" else {}
        made = resources(request)  # the tags go on what is made, not on its VPC
        out.append((TAG_ACTIONS[service, op], made[:1] if made else None, tag_context))
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
        out.append(("iam:PassRole", [p["Target"]["RoleArn"]],
                    {"iam:PassedToService": SCHEDULER}))
    if op == "PutRestApi":
        body = json.loads(p["body"])
        roles = {i["x-amazon-apigateway-integration"]["credentials"]
                 for path in body["paths"].values() for i in path.values()
                 if i.get("x-amazon-apigateway-integration", {}).get("credentials")}
        out.append(("iam:PassRole", sorted(roles), {"iam:PassedToService": API_GATEWAY}))
    return out


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str) -> bool:
    """IAM's wildcards: `*` any run of characters (across ':' and '/'), `?` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _condition_holds(statement: dict, context: dict) -> bool:
    for operator, keys in statement.get("Condition", {}).items():
        assert operator == "StringEquals", f"the checker does not know {operator}"
        for key, values in keys.items():
            if context.get(key) not in _listed(values):
                return False
    return True


def allowed(policy: dict, action: str, arns: list[str] | None, context: dict) -> bool:
    for arn in arns or [None]:
        if not any(action in _listed(s["Action"])
                   and (arn is None or any(_matches(r, arn) for r in _listed(s["Resource"])))
                   and _condition_holds(s, context)
                   for s in policy["Statement"]):
            return False
    return True


@pytest.fixture(scope="module")
def policy() -> dict:
    return json.loads(POLICY.read_text())


def test_the_document_has_no_wildcard_action_and_only_allows(policy):
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        for action in _listed(statement["Action"]):
            assert "*" not in action and "?" not in action, action
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action


def test_the_checker_rejects_what_the_document_does_not_allow(policy):
    assert not allowed(policy, "sqs:PurgeQueue", [_arn("sqs", "t1-jobs")], {})
    assert not allowed(policy, "sqs:SendMessage", [_arn("sqs", "someone-elses-queue")], {})
    assert not allowed(policy, "iam:PassRole", [f"arn:aws:iam::{ACCOUNT}:role/t1-task"],
                       {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not allowed(policy, "ec2:DeleteSecurityGroup", [_arn("ec2", "security-group/sg-1")],
                       {"ec2:ResourceTag/app": "other"})
    assert allowed(policy, "sqs:SendMessage", [_arn("sqs", "t1-jobs")], {})


def _session(aws, engine, schedules: dict) -> list[Request]:  # noqa: F811
    """Every command, and every update path deploy has, once."""
    from tasks.jobkit.schedules import Schedule

    def declare(*names: str) -> None:  # the job modules' schedules, as `deploy` finds them
        schedules.clear()
        schedules.update({n: Schedule("rate(1 hour)", {"x": 1, "y": 2}, n, "tasks.debug.add",
                                      "tasks.debug") for n in names})

    declare("kept", "removed")
    steps = [["plan"], ["deploy"], ["deploy"]]
    for argv in steps:
        code, output = run(aws, engine, *argv)
        assert code == 0, output
    # the drifts deploy puts right, each through its update call
    url = aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"]
    aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30"})
    aws.ecr.put_image_scanning_configuration(repositoryName="t1",
                                             imageScanningConfiguration={"scanOnPush": False})
    aws.iam.update_assume_role_policy(RoleName="t1-task", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{  # no confused-deputy condition
            "Effect": "Allow", "Principal": {"Service": ECS_TASKS},
            "Action": "sts:AssumeRole"}]}))
    aws.ecs.put_cluster_capacity_providers(cluster="t1", capacityProviders=["FARGATE"],
                                           defaultCapacityProviderStrategy=[])
    (engine.root / "tasks" / "reports.py").write_text("JOBS = []\n")
    declare("kept", "added")  # a schedule deleted, one created
    aws.scheduler.update_schedule(Name="kept", GroupName="t1-schedules",  # and one drifted: updated
                                  ScheduleExpression="rate(2 hours)",
                                  FlexibleTimeWindow={"Mode": "OFF"}, Target={
                                      "Arn": STACK.queue_arn,
                                      "RoleArn": STACK.role_arn(STACK.scheduler_role)})
    code, output = run(aws, engine, "deploy", "--log-retention", "30", "--max-tasks", "5",
                       "--seconds-per-job", "4", "--max-message-age", "300")
    assert code == 0, output
    changed = progress(output)
    assert {changed[k] for k in ("sqs queue and dlq", "ecr repository", "ecs cluster",
                                 "ecs service", "cloudwatch log group")} == {"updated"}, output
    # the operator's commands, with something to show
    dlq = aws.sqs.get_queue_url(QueueName="t1-jobs-dlq")["QueueUrl"]
    aws.sqs.send_message(QueueUrl=dlq, MessageBody=_celery_body("tasks.debug.fail", "id-1"))
    for argv in (["status"], ["logs"], ["dlq"], ["redrive"]):
        code, output = run(aws, engine, *argv)
        assert code == 0, output
    # someone attached a managed policy to a stack role: destroy detaches it
    made = aws.iam.create_policy(PolicyName="extra", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
    aws.iam.attach_role_policy(RoleName="t1-task", PolicyArn=made["Policy"]["Arn"])
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    # the test's own setup calls above are not the deployer's
    return [r for r in aws.requests if not (r.operation in TAMPERING
                                            and TAMPERING[r.operation](r.params))]


# The test's own calls, told from the deployer's by what they send (deploy sends the
# wanted values back; redrive sends to the work queue; nothing of ours attaches policies).
TAMPERING = {
    "SetQueueAttributes": lambda p: p.get("Attributes") == {"VisibilityTimeout": "30"},
    "PutImageScanningConfiguration": lambda p: p["imageScanningConfiguration"] == {
        "scanOnPush": False},
    "UpdateAssumeRolePolicy": lambda p: "Condition" not in p["PolicyDocument"],
    "PutClusterCapacityProviders": lambda p: p["capacityProviders"] == ["FARGATE"],
    "SendMessage": lambda p: p["QueueUrl"].endswith("-dlq"),
    "CreatePolicy": lambda p: True,
    "UpdateSchedule": lambda p: p["ScheduleExpression"] == "rate(2 hours)",
    "AttachRolePolicy": lambda p: True,
}


def test_every_call_of_every_command_is_allowed_and_every_action_is_needed(aws, engine, policy,  # noqa: F811
                                                                           monkeypatch):
    schedules: dict = {}
    monkeypatch.setattr(ecs_schedules, "deployed_schedules", lambda: dict(schedules))
    requests = _session(aws, engine, schedules)
    denied, used = [], set()
    for request in requests:
        for action, arns, context in needs(request):
            used.add(action)
            if not allowed(policy, action, arns, context):
                denied.append(f"{request.service}.{request.operation} needs {action} on {arns}")
    assert denied == [], "\n".join(sorted(set(denied)))

    in_document = {a for s in policy["Statement"] for a in _listed(s["Action"])}
    assert set(NOT_BOTO3_CALLS) <= in_document
    unused = in_document - used - set(NOT_BOTO3_CALLS)
    assert unused == set(), f"in the document but never needed: {sorted(unused)}"
    # the session did go through the paths that matter
    assert {"ecs:RunTask", "ecs:StopTask", "ecs:UpdateService", "sqs:SetQueueAttributes",
            "iam:UpdateAssumeRolePolicy", "iam:DetachRolePolicy", "iam:PassRole",
            "apigateway:PUT", "apigateway:PATCH", "apigateway:DELETE",
            "scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule",
            "scheduler:DeleteScheduleGroup"} <= used
