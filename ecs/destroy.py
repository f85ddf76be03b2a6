"""`destroy`: remove everything `deploy` made, found by name and tag.

Every step first looks its resource up and says "absent" when it is gone, so a stack that
was half deployed, or half destroyed by an earlier run, is always removed to the end.
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import ClientError

from ecs import alarms, api, cluster, data, log_group, network, registry, roles, scaling, schedules
from ecs.callback_secret import destroy_callback_secret
from ecs.plan import progress_line
from ecs.policies import boundary_arn, boundary_name
from ecs.retry import REAL_CLOCK, Clock, Patient, WaitTimeout, poll
from ecs.stack import SMOKE_STARTED_BY, STOP_TIMEOUT, Stack

Echo = Callable[[str], None]


def _line(echo: Echo, verb: str, kind: str, name: str) -> None:
    echo(f"  {verb:10} {kind:28} {name}")


class _Waits:
    """Whether to wait where AWS makes destroy wait, and on which clock."""

    def __init__(self, wait: bool, clock: Clock) -> None:
        self.wait = wait
        self.clock = clock

    def __bool__(self) -> bool:
        return self.wait


def destroy(clients, stack: Stack, *, keep_data: bool = False, echo: Echo = print,
            wait: bool = True, clock: Clock = REAL_CLOCK) -> int:
    """Delete the stack; returns how many resources were deleted."""
    echo(f"destroying stack {stack.name} in {stack.region}")
    deleted = 0
    waits = _Waits(wait, clock)
    for step in (_schedules, _api, _alarms, _scaling, _service, _smoke_tasks, _task_definitions,
                 _cluster, _security_group, _roles, _boundary, _callback_secret, _logs,
                 _repository, _queues):
        deleted += step(clients, stack, echo, waits)
    if keep_data:
        _line(echo, "kept", "dynamodb table", stack.table_name)
        _line(echo, "kept", "s3 bucket", stack.bucket_name)
    else:
        deleted += _table(clients, stack, echo, waits)
        deleted += _bucket(clients, stack, echo, waits)
    echo(f"{deleted} resource(s) deleted" if deleted else "nothing left to delete")
    return deleted


def _schedules(clients, stack, echo, wait) -> int:
    """First, so that nothing fires into a queue that is going away."""
    return schedules.destroy_schedules(
        clients, stack, lambda verb, kind, name: _line(echo, verb, kind, name))


def _api(clients, stack, echo, wait) -> int:
    apigw = Patient(clients.apigateway)
    n = 0
    plan = api.find_usage_plan(apigw, stack)
    if plan:
        # A usage plan with API stages cannot be deleted: unlink them first.
        ops = [{"op": "remove", "path": "/apiStages", "value": f"{s['apiId']}:{s['stage']}"}
               for s in plan.get("apiStages", [])]
        if ops:
            apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=ops)
        apigw.delete_usage_plan(usagePlanId=plan["id"])
        n += 1
    _line(echo, "deleted" if plan else "absent", "usage plan", stack.usage_plan_name)
    key = api.find_api_key(apigw, stack)
    if key:
        apigw.delete_api_key(apiKey=key["id"])
        n += 1
    _line(echo, "deleted" if key else "absent", "api key", stack.api_key_name)
    rest = api.find_api(apigw, stack)
    if rest:
        apigw.delete_rest_api(restApiId=rest["id"])
        n += 1
    _line(echo, "deleted" if rest else "absent", "api gateway rest api", stack.api_name)
    return n


def _alarms(clients, stack, echo, wait) -> int:
    cloudwatch = clients.cloudwatch
    n = 0
    for name in alarms.alarm_names(stack):
        alarm = scaling.find_alarm(cloudwatch, name)
        if alarm:
            cloudwatch.delete_alarms(AlarmNames=[name])
            n += 1
        _line(echo, "deleted" if alarm else "absent", "cloudwatch alarm", name)
    return n


def _scaling(clients, stack, echo, wait) -> int:
    aas = clients.application_autoscaling
    n = 0
    policies = scaling.find_policies(aas, stack)
    for name, kind in ((stack.target_policy, "target tracking policy"),
                       (stack.step_policy, "step scaling policy")):
        if name in policies:
            aas.delete_scaling_policy(PolicyName=name, ServiceNamespace=scaling.NAMESPACE,
                                      ResourceId=stack.scaling_resource_id,
                                      ScalableDimension=scaling.DIMENSION)
            n += 1
        _line(echo, "deleted" if name in policies else "absent", kind, name)
    target = scaling.find_target(aas, stack)
    if target:
        aas.deregister_scalable_target(ServiceNamespace=scaling.NAMESPACE,
                                       ResourceId=stack.scaling_resource_id,
                                       ScalableDimension=scaling.DIMENSION)
        n += 1
    _line(echo, "deleted" if target else "absent", "scalable target",
          stack.scaling_resource_id)
    return n


def _service(clients, stack, echo, wait) -> int:
    ecs = clients.ecs
    found = cluster.describe_service(ecs, stack.cluster, stack.service)
    name = f"{stack.cluster}/{stack.service}"
    status = (found or {}).get("status")
    if status not in ("ACTIVE", "DRAINING"):
        _line(echo, "absent", "ecs service", name)
        return 0
    if status == "ACTIVE":
        # force: stops the running tasks (SIGTERM, then stopTimeout) instead of refusing.
        ecs.delete_service(cluster=stack.cluster, service=stack.service, force=True)
    if wait:
        # The cluster cannot go while its service drains (ClusterContainsServicesException).
        def drained() -> tuple[bool, str]:
            now = cluster.describe_service(ecs, stack.cluster, stack.service)
            if now is None or now.get("status") != "DRAINING":
                return True, ""
            return False, f"DRAINING, {now.get('runningCount', 0)} task(s) stopping"

        try:
            poll(drained, deadline=cluster.DRAINING_SECONDS, interval=10, what=name,
                 clock=wait.clock,
                 progress=lambda text: echo(progress_line("ecs service", name, text)))
        except WaitTimeout as exc:
            echo(f"  (service still draining: {exc}; the cluster may refuse deletion)")
    _line(echo, "deleted", "ecs service", name)
    return 1 if status == "ACTIVE" else 0


def _smoke_tasks(clients, stack, echo, wait) -> int:
    """A smoke task left running by an interrupted deploy would keep the cluster."""
    if cluster.find_cluster(clients.ecs, stack.cluster) is None:
        return 0
    # startedBy must be ListTasks' only filter; it lists tasks whose desired status is
    # RUNNING by default, which are the ones to stop.
    listed = clients.ecs.list_tasks(cluster=stack.cluster, startedBy=SMOKE_STARTED_BY)["taskArns"]
    described = clients.ecs.describe_tasks(cluster=stack.cluster, tasks=listed)["tasks"] \
        if listed else []
    arns = [t["taskArn"] for t in described if t.get("lastStatus") != "STOPPED"]
    for task in described:
        if task["taskArn"] in arns and task.get("desiredStatus") != "STOPPED":
            clients.ecs.stop_task(cluster=stack.cluster, task=task["taskArn"],
                                  reason="stack destroyed")
    if arns and wait:
        # A cluster with tasks still stopping refuses deletion (ClusterContainsTasksException).
        def stopped() -> tuple[bool, str]:
            tasks = clients.ecs.describe_tasks(cluster=stack.cluster, tasks=arns)["tasks"]
            left = [t for t in tasks if t.get("lastStatus") != "STOPPED"]
            return not left, f"{len(left)} task(s) stopping"

        poll(stopped, deadline=STOP_TIMEOUT + 60, interval=10, what="smoke tasks",
             clock=wait.clock,
             progress=lambda text: echo(progress_line("smoke task", SMOKE_STARTED_BY, text)))
    for arn in arns:
        _line(echo, "stopped", "smoke task", arn.rsplit("/", 1)[-1])
    return len(arns)


def _task_definitions(clients, stack, echo, wait) -> int:
    ecs = clients.ecs
    arns = []
    for page in ecs.get_paginator("list_task_definitions").paginate(
            familyPrefix=stack.family, status="ACTIVE"):
        arns += page["taskDefinitionArns"]
    for arn in arns:
        ecs.deregister_task_definition(taskDefinition=arn)
    # Deregistered revisions stay (INACTIVE) until deleted; delete takes ten at a time.
    inactive = []
    for page in ecs.get_paginator("list_task_definitions").paginate(
            familyPrefix=stack.family, status="INACTIVE"):
        inactive += page["taskDefinitionArns"]
    for start in range(0, len(inactive), 10):
        ecs.delete_task_definitions(taskDefinitions=inactive[start:start + 10])
    _line(echo, "deleted" if arns else "absent", "ecs task definition",
          f"{stack.family} ({len(arns)} revision(s))" if arns else stack.family)
    return len(arns)


def _cluster(clients, stack, echo, wait) -> int:
    found = cluster.find_cluster(clients.ecs, stack.cluster)
    if found:
        clients.ecs.delete_cluster(cluster=stack.cluster)
    _line(echo, "deleted" if found else "absent", "ecs cluster", stack.cluster)
    return 1 if found else 0


def _security_group(clients, stack, echo, wait) -> int:
    ec2 = clients.ec2
    groups = network.find_security_groups(ec2, stack)  # one per VPC the stack has used
    name = network.security_group_name(stack)
    if not groups:
        _line(echo, "absent", "security group", name)
    for group in groups:
        # The stopped tasks' network interfaces linger for a few minutes after the service
        # is gone; until they are released AWS answers DependencyViolation.
        for attempt in range(30 if wait else 1):
            try:
                ec2.delete_security_group(GroupId=group["GroupId"])
                break
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "DependencyViolation" or not wait \
                        or attempt == 29:
                    raise
                echo(progress_line("security group", group["GroupId"],
                                   "stopped tasks' network interfaces not released yet"))
                wait.clock.sleep(10)
        _line(echo, "deleted", "security group", f"{name} ({group['GroupId']})")
    return len(groups)


def _roles(clients, stack, echo, wait) -> int:
    iam = clients.iam
    n = 0
    for name in (stack.execution_role, stack.task_role, stack.api_role, stack.scheduler_role):
        role = roles.get_role(iam, name)
        if role:
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
            iam.delete_role(RoleName=name)
            n += 1
        _line(echo, "deleted" if role else "absent", "iam role", name)
    return n


def _boundary(clients, stack, echo, wait) -> int:
    """Kept: it is an administrator's to delete (the deployer policy may not), and it grants
    nothing on its own."""
    arn = boundary_arn(stack)
    found = roles.boundary_document(clients.iam, arn) is not None
    _line(echo, "kept" if found else "absent", "iam permissions boundary",
          boundary_name(stack))
    if found:
        echo(f"  (an administrator deletes it: aws iam delete-policy --policy-arn {arn})")
    return 0


def _callback_secret(clients, stack, echo, wait) -> int:
    return destroy_callback_secret(clients, stack,
                                   lambda verb, kind, name: _line(echo, verb, kind, name))


def _logs(clients, stack, echo, wait) -> int:
    found = log_group.find_log_group(clients.logs, stack.log_group)
    if found:
        clients.logs.delete_log_group(logGroupName=stack.log_group)
    _line(echo, "deleted" if found else "absent", "cloudwatch log group", stack.log_group)
    return 1 if found else 0


def _repository(clients, stack, echo, wait) -> int:
    found = registry.find_repository(clients.ecr, stack.repository)
    if found:
        clients.ecr.delete_repository(repositoryName=stack.repository, force=True)
    _line(echo, "deleted" if found else "absent", "ecr repository", stack.repository)
    return 1 if found else 0


def _queues(clients, stack, echo, wait) -> int:
    n = 0
    for name in (stack.queue_name, stack.dlq_name):
        url = data.queue_url(clients.sqs, name)
        if url:
            clients.sqs.delete_queue(QueueUrl=url)
            n += 1
        _line(echo, "deleted" if url else "absent", "sqs queue", name)
    return n


def _bucket(clients, stack, echo, wait) -> int:
    """S3 deletes only an empty bucket: its objects and unfinished uploads go first."""
    s3 = clients.s3
    found = data.bucket_exists(s3, stack.bucket_name)
    if found:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket_name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:  # a page holds at most 1,000 keys, DeleteObjects' limit
                s3.delete_objects(Bucket=stack.bucket_name,
                                  Delete={"Objects": keys, "Quiet": True})
        for page in s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=stack.bucket_name):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=stack.bucket_name, Key=upload["Key"],
                                          UploadId=upload["UploadId"])
        s3.delete_bucket(Bucket=stack.bucket_name)
    _line(echo, "deleted" if found else "absent", "s3 bucket", stack.bucket_name)
    return 1 if found else 0


def _table(clients, stack, echo, wait) -> int:
    ddb = clients.dynamodb
    found = data.describe_table(ddb, stack.table_name)
    if found and found.get("TableStatus") != "DELETING":
        try:
            ddb.delete_table(TableName=stack.table_name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
    _line(echo, "deleted" if found else "absent", "dynamodb table", stack.table_name)
    return 1 if found else 0
