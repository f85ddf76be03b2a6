"""Where AWS is eventually consistent, paged or slow, and moto is none of these.

Each rule below plays one documented AWS behaviour on moto's clients with botocore event
hooks, on the test's fake clock:

- API Gateway answers GetDeployments 25 a page (`position` for the next one);
- SQS refuses to create a queue of a name deleted less than 60 s ago (QueueDeletedRecently);
- a deleted ECS service stays DRAINING while its tasks stop: it cannot be updated, and no
  new service of its name can be created until it is INACTIVE;
- IAM roles take seconds to propagate: ECS and API Gateway reject a role used right after
  CreateRole.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from ecs.retry import Clock, WaitTimeout, queue_deleted_recently, retry_until, role_not_ready
from tests.test_ecs_deploy import aws, deployed, engine, progress, run, waits  # noqa: F401


def refuse(client, operation: str, rule) -> list[dict]:
    """Answer `operation` with an AWS error whenever rule(params) returns (code, message);
    otherwise let the call through to moto. Returns the params of every refused call."""
    service = client.meta.service_model.service_id.hyphenize()
    refused: list[dict] = []

    def remember(params, context, **kwargs):
        context["api_params"] = dict(params)

    def answer(context, **kwargs):
        params = context.get("api_params", {})
        error = rule(params)
        if error is None:
            return None
        refused.append(params)
        code, message = error
        return AWSResponse(None, 400, {}, None), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    client.meta.events.register(f"provide-client-params.{service}.{operation}", remember)
    client.meta.events.register(f"before-call.{service}.{operation}", answer)
    return refused


def page_deployments(client, size: int = 25) -> list[dict]:
    """API Gateway's paging of GetDeployments (moto answers everything at once): `limit`
    items a page (25 unless asked, at most 500), newest first, `position` for the next."""
    requests: list[dict] = []

    def remember(params, context, **kwargs):
        context["page"] = dict(params)
        requests.append(dict(params))

    def paginate(parsed, context, **kwargs):
        asked = context.get("page", {})
        items = list(reversed(parsed.get("items", [])))
        start = int(asked.get("position") or 0)
        limit = min(int(asked.get("limit") or size), 500)
        parsed["items"] = items[start : start + limit]
        parsed.pop("position", None)
        if start + limit < len(items):
            parsed["position"] = str(start + limit)

    client.meta.events.register("provide-client-params.api-gateway.GetDeployments", remember)
    client.meta.events.register("after-call.api-gateway.GetDeployments", paginate)
    return requests


class QueueNameReuse:
    """SQS: a deleted queue's name can be used again 60 s later (moto: at once)."""

    def __init__(self, aws) -> None:  # noqa: F811
        self.time = aws.time
        self.deleted: dict[str, float] = {}
        sqs = aws.sqs
        sqs.meta.events.register("provide-client-params.sqs.DeleteQueue", self._deleting)
        self.refused = refuse(sqs, "CreateQueue", self._rule)

    def _deleting(self, params, **kwargs):
        self.deleted[params["QueueUrl"].rsplit("/", 1)[-1]] = self.time.now

    def _rule(self, params):
        when = self.deleted.get(params["QueueName"])
        if when is not None and self.time.now - when < 60:
            return (
                "AWS.SimpleQueueService.QueueDeletedRecently",
                "You must wait 60 seconds after deleting a queue before you can create "
                "another with the same name.",
            )
        return None


class DrainingService:
    """ECS: a deleted service is DRAINING for `seconds` (its tasks stopping), then
    INACTIVE. While DRAINING it cannot be updated, nor a new one of its name created."""

    def __init__(self, aws, seconds: float = 45.0) -> None:  # noqa: F811
        self.time = aws.time
        self.seconds = seconds
        self.deleted: dict[str, float] = {}
        ecs = aws.ecs
        ecs.meta.events.register("provide-client-params.ecs.DeleteService", self._deleting)
        ecs.meta.events.register("after-call.ecs.DescribeServices", self._describe)
        self.refused_updates = refuse(ecs, "UpdateService", self._update_rule)
        self.refused_creates = refuse(ecs, "CreateService", self._create_rule)

    def deleted_now(self, name: str = "worker") -> None:
        self.deleted[name] = self.time.now

    def _deleting(self, params, **kwargs):
        self.deleted_now(params["service"])

    def draining(self, name: str) -> bool:
        when = self.deleted.get(name)
        return when is not None and self.time.now - when < self.seconds

    def _describe(self, parsed, **kwargs):
        for service in parsed.get("services", []):
            if self.draining(service["serviceName"]):
                service["status"] = "DRAINING"
            elif service["serviceName"] in self.deleted and service["status"] == "ACTIVE":
                service["status"] = "INACTIVE"

    def _update_rule(self, params):
        if params["service"] in self.deleted:
            return "ServiceNotActiveException", "Service was not ACTIVE."
        return None

    def _create_rule(self, params):
        if self.draining(params["serviceName"]):
            return "InvalidParameterException", "Creation of service was not idempotent."
        self.deleted.pop(params["serviceName"], None)  # a new service of that name
        return None


class RolePropagation:
    """IAM: a role is usable by ECS and API Gateway `seconds` after CreateRole (moto: at
    once). Until then they answer as AWS does for a role not yet propagated."""

    ECS = {
        "RegisterTaskDefinition": ("ClientException", "Role is not valid"),
        "CreateService": (
            "InvalidParameterException",
            "Unable to assume the service linked role. Please verify that "
            "the ECS service linked role exists.",
        ),
        "RunTask": ("InvalidParameterException", "Unable to assume role"),
    }
    API = {
        "PutRestApi": (
            "BadRequestException",
            "Role arn:aws:iam::123456789012:role/t1-apigateway cannot be assumed by API Gateway",
        )
    }

    def __init__(self, aws, seconds: float = 8.0) -> None:  # noqa: F811
        self.time = aws.time
        self.seconds = seconds
        self.created: float | None = None
        aws.iam.meta.events.register("after-call.iam.CreateRole", self._created)
        self.refused = {
            op: refuse(aws.ecs, op, self._rule(error)) for op, error in self.ECS.items()
        }
        self.refused |= {
            op: refuse(aws.apigateway, op, self._rule(error)) for op, error in self.API.items()
        }

    def _created(self, **kwargs):
        self.created = self.time.now

    def _rule(self, error):
        def rule(params):
            if self.created is not None and self.time.now - self.created < self.seconds:
                return error
            return None

        return rule


# ---- 1. pagination


def test_a_deployment_on_the_second_page_is_found_and_not_made_again(aws, engine, deployed):  # noqa: F811
    apigw = aws.apigateway
    api_id = apigw.get_rest_apis()["items"][0]["id"]
    for n in range(30):  # someone else's deployments, newer than the stage's one
        apigw.create_deployment(restApiId=api_id, description=f"manual {n}")
    requests = page_deployments(apigw)
    assert len(apigw.get_deployments(restApiId=api_id)["items"]) == 25  # AWS's first page

    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    steps = progress(output)
    assert steps["api gateway rest api"] == "unchanged", output
    assert steps["api gateway stage"] == "unchanged"
    assert any(r.get("position") for r in requests)  # the deploy read page 2
    pages = apigw.get_paginator("get_deployments").paginate(restApiId=api_id)
    assert sum(len(page["items"]) for page in pages) == 31  # no new deployment


# ---- 2. destroy then deploy at once


def test_a_queue_deleted_a_moment_ago_is_waited_for(aws, engine, deployed):  # noqa: F811
    rule = QueueNameReuse(aws)
    assert run(aws, engine, "destroy", "--yes")[0] == 0
    deleted_at = aws.time.now
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert rule.refused, "the rule never refused: the test saw nothing"
    lines = waits(output, "sqs queue and dlq")
    assert lines and "60 s" in lines[0] and "s left" in lines[0]
    assert aws.time.now - deleted_at >= 60
    assert aws.sqs.get_queue_url(QueueName="t1-jobs")["QueueUrl"]


def test_the_queue_wait_has_a_deadline():
    client = boto3.client(
        "sqs",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )
    now = [0.0]
    clock_sleeps: list[float] = []

    def sleep(s):
        clock_sleeps.append(s)
        now[0] += s

    with Stubber(client) as stub:
        for _ in range(20):
            stub.add_client_error("create_queue", "AWS.SimpleQueueService.QueueDeletedRecently")
        with pytest.raises(WaitTimeout, match="60 s"):
            retry_until(
                client.create_queue,
                QueueName="q",
                retryable=queue_deleted_recently,
                deadline=90,
                base=10,
                cap=10,
                progress=lambda t: None,
                clock=Clock(lambda: now[0], sleep),
            )
    assert sum(clock_sleeps) == pytest.approx(90)


def test_a_service_still_draining_is_replaced_not_updated(aws, engine, deployed):  # noqa: F811
    rule = DrainingService(aws, seconds=45)
    # Deleted a moment ago (the console, or a destroy that did not wait for it).
    aws.ecs.delete_service(cluster="t1", service="worker", force=True)
    rule.deleted_now()
    code, output = run(aws, engine, "plan")
    assert progress(output)["ecs service"] == "create", output
    assert "previous service still draining" in output
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert rule.refused_updates == [] and rule.refused_creates == []
    assert progress(output)["ecs service"] == "created"
    assert any("DRAINING" in line for line in waits(output, "ecs service"))
    service = aws.ecs.describe_services(cluster="t1", services=["worker"])["services"][0]
    assert service["status"] == "ACTIVE"


def test_destroy_then_deploy_at_once(aws, engine, deployed):  # noqa: F811
    queues, _draining = QueueNameReuse(aws), DrainingService(aws, seconds=45)
    roles = RolePropagation(aws, seconds=8)
    code, output = run(aws, engine, "destroy", "--yes")
    assert code == 0, output
    assert waits(output, "ecs service"), "destroy waits while the service drains"
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert queues.refused and roles.refused["RegisterTaskDefinition"]
    steps = progress(output)
    assert steps.pop("iam permissions boundary") == "unchanged"  # destroy keeps it
    assert set(steps.values()) <= {"created", "checked"}, output
    assert waits(output, "sqs queue and dlq") and waits(output, "ecs task definition")


# ---- 3. IAM propagation


def test_roles_just_created_are_retried_until_they_propagate(aws, engine):  # noqa: F811
    rule = RolePropagation(aws, seconds=8)
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert rule.refused["RegisterTaskDefinition"], "ECS never refused: the test saw nothing"
    lines = waits(output, "ecs task definition")
    assert lines and "Role is not valid" in lines[0] and "retrying in" in lines[0]
    # API Gateway's own check came later, once the roles were old enough
    assert set(progress(output).values()) <= {"created", "checked"}


def test_put_rest_api_waits_for_its_role(aws, engine):  # noqa: F811
    calls = {"n": 0}

    def first_two(params):
        calls["n"] += 1
        return RolePropagation.API["PutRestApi"] if calls["n"] <= 2 else None

    refused = refuse(aws.apigateway, "PutRestApi", first_two)
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert len(refused) == 2
    assert any("cannot be assumed" in line for line in waits(output, "api gateway rest api"))


def _bare(service: str):
    return boto3.client(
        service,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.mark.parametrize(
    "code, message, retried",
    [
        ("ClientException", "Role is not valid", True),
        ("InvalidParameterException", "Unable to assume role and validate the listeners", True),
        ("InvalidParameterException", "Unable to assume the service linked role.", True),
        ("ClientException", "Invalid 'cpu' setting for task.", False),
        ("InvalidParameterException", "The container worker does not exist", False),
        ("AccessDeniedException", "not authorized to perform: ecs:RegisterTaskDefinition", False),
    ],
)
def test_only_role_propagation_errors_are_retried(code, message, retried):
    client = _bare("ecs")
    sleeps: list[float] = []
    now = [0.0]

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    with Stubber(client) as stub:
        stub.add_client_error("list_clusters", code, message)
        stub.add_response("list_clusters", {"clusterArns": []})
        if retried:
            assert retry_until(
                client.list_clusters,
                retryable=role_not_ready,
                deadline=60,
                progress=lambda t: None,
                clock=Clock(lambda: now[0], sleep),
            ) == {"clusterArns": []}
            assert sleeps == [2.0]
        else:
            with pytest.raises(client.exceptions.ClientError):
                retry_until(
                    client.list_clusters,
                    retryable=role_not_ready,
                    deadline=60,
                    progress=lambda t: None,
                    clock=Clock(lambda: now[0], sleep),
                )
            assert sleeps == []


def test_api_gateway_role_errors_are_retried_and_others_not():
    def error(message):
        return ClientError(
            {"Error": {"Code": "BadRequestException", "Message": message}}, "PutRestApi"
        )

    assert role_not_ready(error("Invalid role ARN: cannot be assumed by API Gateway"))
    assert role_not_ready(error("Role arn:aws:iam::1:role/x cannot be assumed"))
    assert role_not_ready(error("Invalid ARN specified in the request")) is None
    assert role_not_ready(error("Errors found during import: Unable to parse")) is None


def test_a_role_that_never_propagates_fails_at_the_deadline(aws, engine):  # noqa: F811
    rule = RolePropagation(aws, seconds=10_000)
    code, output = run(aws, engine, "deploy")
    assert code != 0
    assert "FAILED     ecs task definition" in output
    assert "gave up after 120s" in output and "Role is not valid" in output
    assert len(rule.refused["RegisterTaskDefinition"]) > 3
