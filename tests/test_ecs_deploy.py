"""`python -m ecs deploy / plan / destroy` against moto in process.

The image build is faked (a runner that records the docker commands and "pushes" by putting
a manifest into moto's ECR), and so is what moto does not do: run tasks. `FakeEcsAgent`
plays ECS's part with botocore event hooks on the clients: a service's deployments as
Create/UpdateService make them, and the life of each task RunTask starts (PENDING, RUNNING
and HEALTHY, then STOPPED with exit code 0 after StopTask, or whatever a test scripts).
Every wait runs on a `FakeTime` clock, so minutes of AWS time pass without sleeping.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from ecs.cli import main
from ecs.clients import Clients
from ecs.image import ROOT, ImageBuilder
from ecs.retry import Clock

STACK = "t1"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SHA = "0123456789abcdef0123"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "digest": "sha256:" + "a" * 64,
            "size": 1,
            "mediaType": "application/vnd.docker.container.image.v1+json",
        },
        "layers": [],
    }
)


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep)


# What DescribeTasks says of a task, one entry per call (the last one repeats): before and
# after StopTask. The default is a worker that starts, passes its health check, and exits
# with code 0 on SIGTERM.
HEALTHY_START = [
    {"lastStatus": "PROVISIONING"},
    {"lastStatus": "PENDING"},
    {"lastStatus": "RUNNING", "health": "UNKNOWN"},
    {"lastStatus": "RUNNING", "health": "HEALTHY"},
]
CLEAN_STOP = [
    {"lastStatus": "DEACTIVATING", "health": "HEALTHY"},
    {"lastStatus": "STOPPED", "exitCode": 0, "stopCode": "UserInitiated"},
]


@dataclass
class TaskScript:
    start: list[dict] = field(default_factory=lambda: list(HEALTHY_START))
    stop: list[dict] = field(default_factory=lambda: list(CLEAN_STOP))
    stopped_reason: str = ""
    calls: int = 0
    stop_calls: int = 0
    stop_requested: bool = False


class FakeEcsAgent:
    """ECS's control plane and agent where moto has none (see the module's docstring)."""

    def __init__(self) -> None:
        self.deployments: dict[str, list[dict]] = {}  # service name -> as AWS reports them
        self.tasks: dict[str, TaskScript] = {}  # task ARN -> its script
        self.next_scripts: list[TaskScript] = []  # for the next RunTask calls, in order
        # What the next DescribeServices calls say of the deployments, one entry per call.
        self.rollout_answers: list = []
        self.armed = False
        self.events: list[tuple[str, dict]] = []  # (operation, params) of every ECS call

    def attach(self, client) -> None:
        events = client.meta.events
        events.register("provide-client-params.ecs.*", self._record)
        events.register("after-call.ecs.CreateService", self._deployed)
        events.register("after-call.ecs.UpdateService", self._deployed)
        events.register("after-call.ecs.DescribeServices", self._describe_services)
        events.register("after-call.ecs.RunTask", self._ran)
        events.register("after-call.ecs.StopTask", self._stopped)
        events.register("after-call.ecs.DescribeTasks", self._describe_tasks)

    def _record(self, params, model, **kwargs):
        self.events.append((model.name, dict(params)))

    def calls(self, operation: str) -> list[dict]:
        return [p for name, p in self.events if name == operation]

    def _deployed(self, parsed, model, **kwargs):
        service = parsed.get("service")
        if not service:
            return
        params = self.calls(model.name)[-1]
        previous = self.deployments.get(service["serviceName"], [])
        task_def = params.get("taskDefinition")
        if (
            model.name == "UpdateService"
            and previous
            and (not task_def or task_def == previous[0]["taskDefinition"])
        ):
            return  # no new deployment: the same revision
        desired = service.get("desiredCount", 0)
        # AWS: a new PRIMARY deployment at once; with no tasks wanted it is COMPLETED at once.
        # Answers queued before this change play from now on (not to the plan's lookups).
        self.armed = bool(self.rollout_answers)
        self.deployments[service["serviceName"]] = [
            {
                "id": f"ecs-svc/{len(self.events)}",
                "status": "PRIMARY",
                "taskDefinition": service["taskDefinition"],
                "desiredCount": desired,
                "runningCount": desired,
                "pendingCount": 0,
                "failedTasks": 0,
                "rolloutState": "COMPLETED",
                "rolloutStateReason": "ECS deployment completed.",
            }
        ]

    def _describe_services(self, parsed, **kwargs):
        for service in parsed.get("services", []):
            known = self.deployments.get(service["serviceName"])
            if known is None or service.get("status") != "ACTIVE":
                continue
            if self.rollout_answers and self.armed:  # a PRIMARY patch, or a function
                answer = self.rollout_answers.pop(0)
                known = (
                    answer([dict(d) for d in known])
                    if callable(answer)
                    else [dict(known[0], **answer), *known[1:]]
                )
            service["deployments"] = known

    def _ran(self, parsed, **kwargs):
        for task in parsed.get("tasks", []):
            self.tasks[task["taskArn"]] = (
                self.next_scripts.pop(0) if self.next_scripts else TaskScript()
            )

    def _stopped(self, parsed, **kwargs):
        task = parsed.get("task", {})
        script = self.tasks.get(task.get("taskArn", ""))
        if script is not None:
            script.stop_requested = True

    def _describe_tasks(self, parsed, **kwargs):
        for task in parsed.get("tasks", []):
            script = self.tasks.get(task["taskArn"])
            if script is None:
                continue
            if script.stop_requested:
                state = script.stop[min(script.stop_calls, len(script.stop) - 1)]
                script.stop_calls += 1
            else:
                state = script.start[min(script.calls, len(script.start) - 1)]
                script.calls += 1
            self._show(task, state, script)

    @staticmethod
    def _show(task: dict, state: dict, script: TaskScript) -> None:
        task["lastStatus"] = state["lastStatus"]
        task["desiredStatus"] = (
            "STOPPED"
            if script.stop_requested
            or state["lastStatus"] in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED")
            else "RUNNING"
        )
        health = state.get("health", "UNKNOWN")
        task["healthStatus"] = health
        for key in ("stoppedReason", "stopCode"):
            task.pop(key, None)
        if state["lastStatus"] == "STOPPED":
            task["stopCode"] = state.get("stopCode", "EssentialContainerExited")
            task["stoppedReason"] = script.stopped_reason or state.get(
                "stoppedReason",
                "Task stopped by user"
                if script.stop_requested
                else "Essential container in task exited",
            )
        for container in task.get("containers", []):
            container["name"] = "worker"
            container["healthStatus"] = health
            container.pop("exitCode", None)
            if "exitCode" in state:
                container["exitCode"] = state["exitCode"]


@dataclass(frozen=True)
class Request:
    service: str  # the client's service name: sqs, ecs, apigateway, cloudwatch ...
    operation: str  # CreateQueue, RunTask ...
    params: dict
    model: object  # botocore's OperationModel (HTTP method and URI for API Gateway)


class FakeAwsClients(Clients):
    """moto's clients with the fake ECS agent on the ECS client, a fake clock, and every
    request recorded (`requests`)."""

    def __init__(self, region: str, **kwargs) -> None:
        super().__init__(region, **kwargs)
        self.agent = FakeEcsAgent()
        self.time = FakeTime()
        self.requests: list[Request] = []
        self._hooked: set[str] = set()

    def get(self, service: str):
        client = super().get(service)
        if service not in self._hooked:
            self._hooked.add(service)
            name = client.meta.service_model.service_name

            def record(params, model, **kwargs):
                self.requests.append(Request(name, model.name, dict(params), model))

            client.meta.events.register("provide-client-params", record)
            if service == "ecs":
                self.agent.attach(client)
        return client


class FakeEngine:
    """Stands in for git and docker: records the commands, pushes manifests to moto. Builds
    from `root`, a small copy of the repository's build inputs that a test may change."""

    def __init__(
        self, clients: Clients, fail_build: bool = False, root: Path | None = None
    ) -> None:
        self.clients = clients
        self.commands: list[list[str]] = []
        self.fail_build = fail_build
        self.sha = SHA
        self.root = root or ROOT

    def __call__(self, argv, **kwargs) -> subprocess.CompletedProcess:
        self.commands.append(list(argv))
        out, code = "", 0
        if argv[:2] == ["git", "rev-parse"]:
            out = self.sha + "\n"
        elif argv[:2] == ["docker", "build"] and self.fail_build:
            code = 1
        elif argv[:2] == ["docker", "push"]:
            # docker's own calls, not the deployer's: a client of its own, not recorded
            repo, tag = argv[2].split("/", 1)[1].split(":")
            registry = boto3.client(
                "ecr", region_name=self.clients.region, endpoint_url=self.clients._endpoint
            )
            registry.put_image(repositoryName=repo, imageTag=tag, imageManifest=MANIFEST)
        return subprocess.CompletedProcess(argv, code, out, "")

    def docker(self) -> list[list[str]]:
        return [c for c in self.commands if c[0] == "docker"]

    def builder(self) -> ImageBuilder:
        return ImageBuilder(
            root=self.root, runner=self, which=lambda n: f"/usr/bin/{n}" if n == "docker" else None
        )

    def tag(self, architecture: str = "X86_64") -> str:
        return self.builder().tag(architecture)


def build_inputs(tmp: Path) -> Path:
    """A build context like the repository's: its .dockerignore, Dockerfile and a module."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".dockerignore", tmp / ".dockerignore")
    (tmp / "docker").mkdir(exist_ok=True)
    shutil.copy(ROOT / "docker" / "Dockerfile", tmp / "docker" / "Dockerfile")
    (tmp / "tasks").mkdir(exist_ok=True)
    (tmp / "tasks" / "__init__.py").write_text('"""jobs"""\n')
    (tmp / "pyproject.toml").write_text('[project]\nname = "sqs-jobs"\n')
    return tmp


def allow_mock_integrations(monkeypatch) -> None:
    """moto requires a uri on every integration; API Gateway does not on `mock` ones (our
    CORS preflights). Let moto take them as AWS does."""
    from moto.apigateway.models import APIGatewayBackend

    original = APIGatewayBackend.put_integration

    def put_integration(
        self,
        function_id,
        resource_id,
        method_type,
        integration_type,
        uri=None,
        integration_method=None,
        **kwargs,
    ):
        return original(
            self,
            function_id,
            resource_id,
            method_type,
            integration_type,
            uri,
            integration_method,
            **kwargs,
        )

    monkeypatch.setattr(APIGatewayBackend, "put_integration", put_integration)


def allow_fargate_tasks(monkeypatch) -> None:
    """moto's RunTask wants each container's memory (Fargate takes the task's, as ours
    does), and fails on a subnet of a VPC without DNS hostnames (AWS does not)."""
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs.models import EC2ContainerServiceBackend

    monkeypatch.setattr(NetworkInterface, "private_dns_name", "", raising=False)

    original = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def requirements(task_definition):
        for container in task_definition.container_definitions:
            container.setdefault("memoryReservation", 0)
        return original(task_definition)

    monkeypatch.setattr(
        EC2ContainerServiceBackend,
        "_calculate_task_resource_requirements",
        staticmethod(requirements),
    )


@pytest.fixture
def aws(in_process_aws, monkeypatch) -> FakeAwsClients:
    allow_mock_integrations(monkeypatch)
    allow_fargate_tasks(monkeypatch)
    return FakeAwsClients(REGION)


@pytest.fixture
def engine(aws, tmp_path) -> FakeEngine:
    return FakeEngine(aws, root=build_inputs(tmp_path / "src"))


def run(aws, engine, *argv: str, answer: str = "") -> tuple[int, str]:
    lines: list[str] = []
    clock = aws.time.clock if isinstance(aws, FakeAwsClients) else None
    code = main(
        [argv[0], "--stack", STACK, *argv[1:]],
        clients=aws,
        builder=engine.builder(),
        confirm=lambda prompt: answer,
        echo=lines.append,
        **({"clock": clock} if clock else {}),
    )
    return code, "\n".join(lines)


VERBS = (
    "created",
    "updated",
    "unchanged",
    "checked",
    "create",
    "update",
    "check",
    "deleted",
    "absent",
    "kept",
    "stopped",
)


def progress(output: str) -> dict[str, str]:
    """{'ecs task definition': 'created', ...} from the progress lines (last one wins)."""
    out = {}
    for line in output.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in VERBS:
            out[line[13:41].strip()] = parts[0]
    return out


def waits(output: str, kind: str) -> list[str]:
    """The progress lines printed while the step `kind` waited."""
    return [
        line
        for line in output.splitlines()
        if line.startswith("  waiting") and line[13:41].strip() == kind
    ]


@pytest.fixture
def deployed(aws, engine) -> str:
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    return output


def test_deploy_creates_every_resource_linked_to_this_stack(aws, engine, deployed):
    from tasks.http_contract.mapping_templates import fill_template

    steps = progress(deployed)
    assert set(steps.values()) == {"created", "checked"}, deployed
    # 27: with the scheduler role and schedule group deferred jobs need (tasks.worker.deferral).
    assert sum(line.startswith("  created ") for line in deployed.splitlines()) == 27

    # table, queues (redrive to this DLQ)
    table = aws.dynamodb.describe_table(TableName="t1-jobs")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    url = aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"]
    attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(":t1-jobs-dlq")
    assert aws.sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"stack": STACK, "app": "sqs-jobs"}

    # ECR: scan on push, lifecycle, the image built from this commit and pushed
    repo = aws.ecr.describe_repositories(repositoryNames=["t1"])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert aws.ecr.get_lifecycle_policy(repositoryName="t1")["lifecyclePolicyText"]
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/t1:{engine.tag()}"
    assert [c[1] for c in engine.docker()] == ["login", "build", "push"]
    assert engine.docker()[1][-3:] == ["-t", image, "."]
    assert f"org.opencontainers.image.revision={SHA}" in engine.docker()[1]
    assert "docker/Dockerfile" in engine.docker()[1]

    group = aws.logs.describe_log_groups(logGroupNamePrefix="/ecs/t1")["logGroups"][0]
    assert group["retentionInDays"] == 14

    # cluster, task definition, service on its latest revision
    cluster = aws.ecs.describe_clusters(clusters=["t1"])["clusters"][0]
    assert sorted(cluster["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    task_def = aws.ecs.describe_task_definition(taskDefinition="t1-worker")["taskDefinition"]
    container = task_def["containerDefinitions"][0]
    assert container["image"] == image
    assert container["stopTimeout"] == 120
    assert container["healthCheck"]["command"] == ["CMD", "python", "-m", "tasks.worker.health"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/t1"
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["JOBS_TARGET"] == "aws"
    assert env["JOBS_QUEUE_NAME"] == "t1-jobs" and env["JOBS_DLQ_NAME"] == "t1-jobs-dlq"
    assert env["JOBS_QUEUE_URL"] == url
    assert env["JOBS_TABLE_NAME"] == "t1-jobs" and env["AWS_REGION"] == REGION
    assert int(env["WORKER_SHUTDOWN_DEADLINE"]) < container["stopTimeout"]
    assert task_def["taskRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/t1-task"
    assert task_def["executionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/t1-task-execution"
    assert (task_def["cpu"], task_def["memory"]) == ("512", "1024")
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    assert service["taskDefinition"] == task_def["taskDefinitionArn"]
    net = service["networkConfiguration"]["awsvpcConfiguration"]
    default_vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])[
        "Vpcs"
    ][0]["VpcId"]
    subnets = aws.ec2.describe_subnets(SubnetIds=net["subnets"])["Subnets"]
    assert {s["VpcId"] for s in subnets} == {default_vpc}
    group = aws.ec2.describe_security_groups(GroupIds=net["securityGroups"])["SecurityGroups"][0]
    assert group["GroupName"] == "t1-worker" and group["IpPermissions"] == []

    # autoscaling: 0..10, backlog target 300 / 2, alarm drives the step policy
    aas = aws.application_autoscaling
    target = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"][0]
    assert (target["ResourceId"], target["MinCapacity"]) == ("service/t1/worker", 0)
    policies = {
        p["PolicyName"]: p
        for p in aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    }
    tracking = policies["t1-backlog-per-task"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 150
    metrics = tracking["CustomizedMetricSpecification"]["Metrics"]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m} == {
        "ApproximateNumberOfMessagesVisible",
        "RunningTaskCount",
    }
    assert [m["Expression"] for m in metrics if "Expression" in m] == ["m1 / m2"]
    alarm = aws.cloudwatch.describe_alarms(AlarmNames=["t1-queue-waiting-no-workers"])
    assert alarm["MetricAlarms"][0]["AlarmActions"] == [
        policies["t1-scale-out-from-zero"]["PolicyARN"]
    ]
    queried = {m["Id"]: m for m in alarm["MetricAlarms"][0]["Metrics"]}
    assert queried["m1"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "QueueName", "Value": "t1-jobs"}
    ]
    assert queried["m2"]["MetricStat"]["Metric"]["MetricName"] == "DesiredTaskCount"
    assert queried["e1"]["Expression"] == "IF(m1 > 0 AND FILL(m2, 0) == 0, 1, 0)"
    step = policies["t1-scale-out-from-zero"]["StepScalingPolicyConfiguration"]
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]

    # alarms an operator watches: any dead letter, and a job waiting over 600 s
    watch = {
        a["AlarmName"]: a
        for a in aws.cloudwatch.describe_alarms(
            AlarmNames=["t1-dead-letters", "t1-oldest-message-age"]
        )["MetricAlarms"]
    }
    dead, old = watch["t1-dead-letters"], watch["t1-oldest-message-age"]
    assert (dead["Namespace"], dead["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dead["Dimensions"] == [{"Name": "QueueName", "Value": "t1-jobs-dlq"}]
    assert (dead["ComparisonOperator"], dead["Threshold"]) == ("GreaterThanThreshold", 0.0)
    assert old["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert old["Dimensions"] == [{"Name": "QueueName", "Value": "t1-jobs"}]
    assert (old["ComparisonOperator"], old["Threshold"]) == ("GreaterThanThreshold", 600.0)
    for alarm in (dead, old):
        tags = aws.cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        assert {t["Key"]: t["Value"] for t in tags} == {"stack": STACK, "app": "sqs-jobs"}
        assert alarm["TreatMissingData"] == "notBreaching" and alarm["AlarmActions"] == []

    # the REST API: integrations on this queue and table, templates as in the repository
    api = next(a for a in aws.apigateway.get_rest_apis()["items"] if a["name"] == "t1")
    resources = {
        r["path"]: r for r in aws.apigateway.get_resources(restApiId=api["id"], limit=500)["items"]
    }
    submit = aws.apigateway.get_integration(
        restApiId=api["id"], resourceId=resources["/tasks/tasks.debug.add"]["id"], httpMethod="POST"
    )
    assert submit["uri"] == f"arn:aws:apigateway:{REGION}:sqs:path/{ACCOUNT}/t1-jobs"
    assert submit["credentials"] == f"arn:aws:iam::{ACCOUNT}:role/t1-apigateway"
    assert submit["requestTemplates"]["application/json"] == fill_template(
        "send_task.request", task_name="tasks.debug.add", queue_name="t1-jobs"
    )
    get_job = aws.apigateway.get_integration(
        restApiId=api["id"], resourceId=resources["/jobs/{job_id}"]["id"], httpMethod="GET"
    )
    assert get_job["uri"] == f"arn:aws:apigateway:{REGION}:dynamodb:action/GetItem"
    assert get_job["requestTemplates"]["application/json"] == fill_template(
        "get_job.request", table_name="t1-jobs"
    )
    stage = aws.apigateway.get_stage(restApiId=api["id"], stageName="v1")
    assert stage["variables"] == {"jobsTable": "t1-jobs"}
    assert stage["methodSettings"]["*/*"]["throttlingRateLimit"] == 50.0
    key = aws.apigateway.get_api_keys(nameQuery="t1-key")["items"][0]
    plan = aws.apigateway.get_usage_plans()["items"][0]
    assert plan["apiStages"] == [{"apiId": api["id"], "stage": "v1"}]
    assert [
        k["id"] for k in aws.apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    ] == [key["id"]]

    # it ends with where to send jobs
    assert f"https://{api['id']}.execute-api.{REGION}.amazonaws.com/v1" in deployed
    assert f"API key id: {key['id']}" in deployed
    assert "curl -s -X POST" in deployed


def test_second_deploy_changes_nothing_and_says_so(aws, engine, deployed):
    api = aws.apigateway.get_rest_apis()["items"][0]
    deployments = aws.apigateway.get_deployments(restApiId=api["id"])["items"]
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert set(progress(output).values()) == {"unchanged"}, output
    assert "nothing changed" in output
    revisions = aws.ecs.list_task_definitions(familyPrefix="t1-worker")["taskDefinitionArns"]
    assert len(revisions) == 1
    assert aws.apigateway.get_deployments(restApiId=api["id"])["items"] == deployments
    assert len(aws.apigateway.get_rest_apis()["items"]) == 1
    assert len(aws.apigateway.get_api_keys()["items"]) == 1
    assert [c[1] for c in engine.docker()] == ["login", "build", "push"]  # no second build


def test_redeploy_with_new_settings_keeps_the_desired_count(aws, engine, deployed):
    aws.ecs.update_service(cluster="t1", service="worker", desiredCount=3)  # autoscaling's
    code, output = run(aws, engine, "deploy", "--cpu", "1024", "--memory", "2048")
    assert code == 0, output
    steps = progress(output)
    assert steps["ecs task definition"] == "updated"
    assert steps["ecs service"] == "updated"
    assert steps["dynamodb table"] == "unchanged"
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    assert service["taskDefinition"].endswith(":2")
    assert service["desiredCount"] == 3


def test_changed_api_definition_is_redeployed_once(aws, engine, deployed, monkeypatch):
    from ecs import api as api_module

    real = api_module.build_definition

    def changed(stack):
        document = real(stack)
        document["info"]["version"] = "2.0"
        return document

    monkeypatch.setattr(api_module, "build_definition", changed)
    rest = aws.apigateway.get_rest_apis()["items"][0]
    code, output = run(aws, engine, "deploy")
    assert progress(output)["api gateway rest api"] == "updated", output
    assert progress(output)["api gateway stage"] == "updated"
    assert len(aws.apigateway.get_deployments(restApiId=rest["id"])["items"]) == 2
    code, output = run(aws, engine, "deploy")
    assert code == 0 and "nothing changed" in output
    assert len(aws.apigateway.get_deployments(restApiId=rest["id"])["items"]) == 2


def _live(aws, arn: str) -> bool:
    """Deleted ECS clusters, services and task definitions stay visible for a while as
    INACTIVE (on AWS too); they are gone as far as the stack is concerned."""
    if ":ecs:" not in arn:
        return True
    kind = arn.split(":")[5].split("/")[0]
    if kind == "cluster":
        found = aws.ecs.describe_clusters(clusters=[arn])["clusters"]
    elif kind == "service":
        found = aws.ecs.describe_services(cluster=arn.split("/")[1], services=[arn])["services"]
    elif kind == "task":  # a stopped task (the smoke task) is history, not a resource
        tasks = aws.ecs.describe_tasks(cluster=arn.split("/")[1], tasks=[arn])["tasks"]
        return any(t["lastStatus"] != "STOPPED" for t in tasks)
    else:
        found = [aws.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]]
    return any(f.get("status") == "ACTIVE" for f in found)


def _stack_resources(aws) -> list[str]:
    """Everything left that is named for the stack or tagged with it."""
    left = []
    tagging = aws.resourcegroupstaggingapi.get_resources(
        TagFilters=[{"Key": "stack", "Values": [STACK]}]
    )["ResourceTagMappingList"]
    left += [r["ResourceARN"] for r in tagging if _live(aws, r["ResourceARN"])]
    left += [u for u in aws.sqs.list_queues().get("QueueUrls", []) if "/t1-" in u]
    left += [t for t in aws.dynamodb.list_tables()["TableNames"] if t.startswith("t1")]
    left += [r["repositoryName"] for r in aws.ecr.describe_repositories()["repositories"]]
    left += [g["logGroupName"] for g in aws.logs.describe_log_groups()["logGroups"]]
    left += [
        r["RoleName"] for r in aws.iam.list_roles()["Roles"] if r["RoleName"].startswith("t1-")
    ]
    left += [
        c
        for c in aws.ecs.list_clusters()["clusterArns"]
        if aws.ecs.describe_clusters(clusters=[c])["clusters"][0]["status"] == "ACTIVE"
    ]
    left += aws.ecs.list_task_definitions(familyPrefix="t1-worker", status="ACTIVE")[
        "taskDefinitionArns"
    ]
    left += [
        g["GroupName"]
        for g in aws.ec2.describe_security_groups()["SecurityGroups"]
        if g["GroupName"].startswith("t1")
    ]
    left += [
        t["ResourceId"]
        for t in aws.application_autoscaling.describe_scalable_targets(ServiceNamespace="ecs")[
            "ScalableTargets"
        ]
    ]
    left += [a["AlarmName"] for a in aws.cloudwatch.describe_alarms()["MetricAlarms"]]
    left += [a["name"] for a in aws.apigateway.get_rest_apis()["items"]]
    left += [k["name"] for k in aws.apigateway.get_api_keys()["items"]]
    left += [p["name"] for p in aws.apigateway.get_usage_plans()["items"]]
    return left


def test_plan_touches_nothing(aws, engine):
    code, output = run(aws, engine, "plan")
    assert code == 0, output
    assert set(progress(output).values()) == {"create", "check"}
    assert "27 to create, 0 to update, 0 unchanged, 2 to check" in output
    # The deferral's scheduler role and group are shown even with no recurring schedule.
    assert progress(output)["schedule group"] == "create"
    assert _stack_resources(aws) == []
    assert engine.docker() == []
    code, dry = run(aws, engine, "deploy", "--dry-run")
    assert code == 0 and _stack_resources(aws) == []
    assert set(progress(dry).values()) == {"create", "check"}


def test_plan_after_deploy_shows_only_what_changed(aws, engine, deployed):
    code, output = run(aws, engine, "plan", "--log-retention", "30")
    assert code == 0, output
    steps = progress(output)
    assert steps.pop("cloudwatch log group") == "update"
    assert set(steps.values()) == {"unchanged"}
    group = aws.logs.describe_log_groups(logGroupNamePrefix="/ecs/t1")["logGroups"][0]
    assert group["retentionInDays"] == 14


def test_destroy_leaves_nothing_of_the_stack(aws, engine, deployed):
    assert _stack_resources(aws)  # the check below can see what deploy made
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert _stack_resources(aws) == []
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0 and "nothing left to delete" in output


def test_destroy_of_a_half_deployed_stack(aws, engine):
    engine.fail_build = True
    code, output = run(aws, engine, "deploy")
    assert code != 0 and "docker build failed" in output
    assert "  FAILED     container image" in output
    steps = progress(output)
    assert steps["ecr repository"] == "created" and "ecs cluster" not in steps
    # and a stack half destroyed: the cluster and a role went missing some other way
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert progress(output)["ecs cluster"] == "absent"
    assert _stack_resources(aws) == []


def test_destroy_of_a_half_destroyed_stack(aws, engine, deployed):
    aws.ecs.delete_service(cluster="t1", service="worker", force=True)
    aws.iam.delete_role_policy(RoleName="t1-task", PolicyName="least-privilege")
    aws.iam.delete_role(RoleName="t1-task")
    aws.sqs.delete_queue(QueueUrl=aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"])
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert _stack_resources(aws) == []


def test_destroy_asks_first_and_can_keep_the_table(aws, engine, deployed):
    code, output = run(aws, engine, "destroy", answer="no")
    assert code == 1 and "nothing deleted" in output
    assert aws.ecs.describe_clusters(clusters=["t1"])["clusters"][0]["status"] == "ACTIVE"
    code, output = run(aws, engine, "destroy", "--keep-data", answer=STACK)
    assert code == 0, output
    assert aws.dynamodb.list_tables()["TableNames"] == ["t1-jobs"]
    assert progress(output)["dynamodb table"] == "kept"
    assert aws.sqs.list_queues().get("QueueUrls", []) == []


def test_deploy_an_existing_image_builds_nothing(aws, engine):
    image = "public.ecr.aws/example/worker:1.2.3"
    code, output = run(aws, engine, "deploy", "--image", image)
    assert code == 0, output
    assert engine.commands == []
    task_def = aws.ecs.describe_task_definition(taskDefinition="t1-worker")["taskDefinition"]
    assert task_def["containerDefinitions"][0]["image"] == image


def test_a_new_untracked_module_is_planned_then_rolled_out(aws, engine, deployed):
    first = engine.tag()
    (engine.root / "tasks" / "reports.py").write_text("JOBS = []\n")  # not committed
    assert engine.tag() != first
    code, output = run(aws, engine, "plan")
    steps = progress(output)
    assert code == 0
    assert (steps["container image"], steps["ecs task definition"], steps["ecs service"]) == (
        "create",
        "update",
        "update",
    ), output
    assert steps["api gateway rest api"] == "unchanged"
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    task_def = aws.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])[
        "taskDefinition"
    ]
    assert task_def["revision"] == 2
    assert task_def["containerDefinitions"][0]["image"].endswith(f":{engine.tag()}")
