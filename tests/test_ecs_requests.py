"""What `deploy` asks AWS for where moto forgets the answer.

moto accepts, but does not keep or return, a service's capacity provider strategy, its
circuit breaker and ECS Exec: the requests themselves are recorded with botocore's event
hooks and asserted. Throttling is played with botocore's Stubber.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from ecs.retry import Patient, with_backoff
from tests.test_ecs_deploy import aws, engine, progress, run  # noqa: F401


@pytest.fixture
def requests(aws):  # noqa: F811
    """{operation name: [params, ...]} of every ECS and EC2 call made through `aws`."""
    seen: dict[str, list[dict]] = {}

    def record(params, model, **kwargs):
        seen.setdefault(model.name, []).append(dict(params))

    def as_aws_answers(parsed, **kwargs):
        # AWS's DescribeServices reports what the last Create/UpdateService set; moto
        # drops these fields, so put them back from the recorded requests.
        sent = seen.get("CreateService", []) + seen.get("UpdateService", [])
        for service in parsed.get("services", []):
            for params in sent:
                for key in ("capacityProviderStrategy", "enableExecuteCommand"):
                    if key in params:
                        service[key] = params[key]
                breaker = params.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker")
                if breaker:
                    service.setdefault("deploymentConfiguration", {})[
                        "deploymentCircuitBreaker"
                    ] = breaker

    for service in ("ecs", "ec2"):
        aws.get(service).meta.events.register(f"provide-client-params.{service}.*", record)
    aws.ecs.meta.events.register("after-call.ecs.DescribeServices", as_aws_answers)
    return seen


def test_service_request_has_spot_strategy_circuit_breaker_and_no_exec(aws, engine, requests):  # noqa: F811
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    (create,) = requests["CreateService"]
    assert create["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 4, "base": 0},
        {"capacityProvider": "FARGATE", "weight": 1, "base": 0},
    ]
    assert "launchType" not in create
    assert create["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": True,
        "rollback": True,
    }
    assert create["enableExecuteCommand"] is False
    assert create["desiredCount"] == 0
    assert create["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED"
    (cluster,) = requests["CreateCluster"]
    assert cluster["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert {"name": "containerInsights", "value": "enabled"} in cluster["settings"]


def test_exec_enabled_and_redeploy_never_sends_a_desired_count(aws, engine, requests):  # noqa: F811
    assert run(aws, engine, "deploy")[0] == 0
    # with every field reported, as AWS does, an unchanged service stays unchanged
    code, output = run(aws, engine, "deploy")
    assert progress(output)["ecs service"] == "unchanged", output
    code, output = run(aws, engine, "deploy", "--enable-exec", "--no-spot")
    assert code == 0, output
    assert (
        "updated    ecs service                  t1/worker  (capacity providers, ecs exec)"
        in output
    )
    assert progress(output)["ecs task definition"] == "unchanged"
    updates = requests["UpdateService"]
    assert len(updates) == 1
    (update,) = updates
    assert "desiredCount" not in update
    assert update["enableExecuteCommand"] is True
    assert update["capacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE", "weight": 1, "base": 0}
    ]
    assert update["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] is True
    task = aws.iam.get_role_policy(RoleName="t1-task", PolicyName="least-privilege")
    actions = {a for s in task["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert "ssmmessages:CreateControlChannel" in actions


def test_given_subnets_are_used_without_public_ips(aws, engine, requests):  # noqa: F811
    vpc = aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = sorted(
        aws.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24")["Subnet"]["SubnetId"]
        for i in (1, 2)
    )
    code, output = run(aws, engine, "deploy", "--subnets", ",".join(subnets))
    assert code == 0, output
    net = requests["CreateService"][0]["networkConfiguration"]["awsvpcConfiguration"]
    assert net["subnets"] == subnets and net["assignPublicIp"] == "DISABLED"
    group = aws.ec2.describe_security_groups(GroupIds=net["securityGroups"])["SecurityGroups"]
    assert group[0]["VpcId"] == vpc


def test_lookups_never_create_and_ignore_look_alikes(aws, engine, requests):  # noqa: F811
    # An API and a key with the stack's names but not its tag belong to someone else.
    other = aws.apigateway.create_rest_api(name="t1")["id"]
    aws.apigateway.create_api_key(name="t1-key")
    code, output = run(aws, engine, "plan")
    assert code == 0 and progress(output)["api gateway rest api"] == "create"
    assert not {
        "CreateCluster",
        "CreateService",
        "RegisterTaskDefinition",
        "CreateSecurityGroup",
    } & set(requests)
    assert run(aws, engine, "deploy")[0] == 0
    assert run(aws, engine, "destroy", "--yes")[0] == 0
    assert [a["id"] for a in aws.apigateway.get_rest_apis()["items"]] == [other]
    assert [k["name"] for k in aws.apigateway.get_api_keys()["items"]] == ["t1-key"]


def _bare_apigateway():
    # No botocore retries, so that only our backoff is at work.
    return boto3.client(
        "apigateway",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_api_gateway_throttling_is_retried_with_growing_waits():
    client = _bare_apigateway()
    sleeps: list[float] = []
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("get_rest_apis", "TooManyRequestsException", http_status_code=429)
        stub.add_response("get_rest_apis", {"items": [{"id": "abc", "name": "t1"}]})
        answer = Patient(client, sleep=sleeps.append).get_rest_apis()
        stub.assert_no_pending_responses()
    assert answer["items"][0]["id"] == "abc"
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[2] and all(0 < s <= 20 for s in sleeps)


def test_other_errors_and_the_last_throttle_are_raised():
    client = _bare_apigateway()
    with Stubber(client) as stub:
        stub.add_client_error("get_rest_apis", "BadRequestException", http_status_code=400)
        with pytest.raises(client.exceptions.BadRequestException):
            with_backoff(client.get_rest_apis, sleep=lambda s: None)
        for _ in range(2):
            stub.add_client_error("get_rest_apis", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            with_backoff(client.get_rest_apis, attempts=2, sleep=lambda s: None)


def test_the_api_import_fails_on_warnings(aws, engine, monkeypatch):  # noqa: F811
    """failOnWarnings: an import API Gateway only half understood fails the deploy (AWS
    rolls the import back); warnings in an answer are an error too."""
    sent: list[dict] = []
    aws.apigateway.meta.events.register(
        "provide-client-params.api-gateway.PutRestApi",
        lambda params, **kwargs: sent.append(dict(params)),
    )
    code, output = run(aws, engine, "deploy")
    assert code == 0, output
    assert [p["failOnWarnings"] for p in sent] == [True]

    def warn(parsed, **kwargs):
        parsed["warnings"] = ["Unsupported extension x-amazon-apigateway-foo ignored"]

    aws.apigateway.meta.events.register("after-call.api-gateway.PutRestApi", warn)
    from ecs import api as api_module

    real = api_module.build_definition
    monkeypatch.setattr(
        api_module, "build_definition", lambda stack: {**real(stack), "x-changed": 1}
    )
    code, output = run(aws, engine, "deploy")
    assert code != 0
    assert "  FAILED     api gateway rest api" in output
    assert "Unsupported extension x-amazon-apigateway-foo ignored" in output
