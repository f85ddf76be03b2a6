"""The mapping templates `deploy` put into (moto's) API Gateway, read back, rendered as API
Gateway renders them, sent to SQS, and executed by a real worker process configured from
the deployed task definition's environment."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from ecs.cli import main
from ecs.image import ImageBuilder
from tests.conftest import RUN_ID, Stack, launch_worker, wait_until
from tests.test_ecs_deploy import (
    FakeAwsClients,
    FakeEngine,
    allow_fargate_tasks,
    allow_mock_integrations,
)

pytestmark = pytest.mark.integration
JSON = "application/json"


@pytest.fixture
def server(monkeypatch):
    """moto's server in this process, so that the test's patch for mock integrations
    (see tests/test_ecs_deploy.py) applies to it; the worker process talks to it."""
    from moto.server import ThreadedMotoServer

    allow_mock_integrations(monkeypatch)
    allow_fargate_tasks(monkeypatch)  # the smoke task (the fake ECS agent plays its life)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_deployed_templates_make_a_job_a_worker_runs(server, monkeypatch):
    from api_shim.integration import AwsIntegration
    from tasks.http_contract.vtl import Params, render
    from tasks.ops.settings import Settings

    for var in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server)
    name = f"it{RUN_ID}"
    aws = FakeAwsClients("us-east-1", endpoint_url=server)
    builder = ImageBuilder(runner=FakeEngine(aws), which=lambda n: n)
    lines: list[str] = []
    assert (
        main(
            ["deploy", "--stack", name],
            clients=aws,
            builder=builder,
            echo=lines.append,
            clock=aws.time.clock,
        )
        == 0
    ), "\n".join(lines)

    # the worker's configuration is the task definition's, pointed at the emulator
    task_def = aws.ecs.describe_task_definition(taskDefinition=f"{name}-worker")
    env = {
        e["name"]: e["value"]
        for e in task_def["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    queue_url = aws.sqs.get_queue_url(QueueName=env["JOBS_QUEUE_NAME"])["QueueUrl"]
    dlq_url = aws.sqs.get_queue_url(QueueName=env["JOBS_DLQ_NAME"])["QueueUrl"]
    worker_env = {
        **env,
        "JOBS_TARGET": "local",
        "AWS_ENDPOINT_URL": server,
        "JOBS_QUEUE_URL": queue_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "JOBS_WAIT_TIME_SECONDS": "1",
    }
    stack = Stack(server, {**os.environ, **worker_env}, queue_url, dlq_url, env["JOBS_TABLE_NAME"])
    worker = launch_worker(stack, "ecsapi", concurrency=1, pool="solo")
    try:
        api = next(a for a in aws.apigateway.get_rest_apis()["items"] if a["name"] == name)
        resources = {
            r["path"]: r["id"]
            for r in aws.apigateway.get_resources(restApiId=api["id"], limit=500)["items"]
        }
        submit = aws.apigateway.get_integration(
            restApiId=api["id"], resourceId=resources["/tasks/tasks.debug.add"], httpMethod="POST"
        )
        job_id = str(uuid.uuid4())
        body = render(
            submit["requestTemplates"][JSON],
            body='{"x": 2, "y": 3}',
            params=Params(),
            context={"requestId": job_id},
        ).text
        integration = AwsIntegration(Settings(sqs_endpoint=server, dynamodb_endpoint=server))
        sent = integration.send(
            submit["uri"], body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert sent.status == 200, sent.body

        def record():
            item = aws.dynamodb.get_item(
                TableName=env["JOBS_TABLE_NAME"], Key={"job_id": {"S": job_id}}
            ).get("Item")
            return item if item and item["status"]["S"] == "SUCCESS" else None

        item = wait_until(record, 60, message=f"job {job_id} done")
        assert json.loads(item["result"]["S"]) == 5

        # and the deployed GET /jobs/{job_id} template reads it back
        get_job = aws.apigateway.get_integration(
            restApiId=api["id"], resourceId=resources["/jobs/{job_id}"], httpMethod="GET"
        )
        query = render(
            get_job["requestTemplates"][JSON],
            body="",
            params=Params(path={"job_id": job_id}),
            context={},
        ).text
        found = integration.send(get_job["uri"], query, {})
        assert found.status == 200
        assert json.loads(found.body)["Item"]["status"] == {"S": "SUCCESS"}
    finally:
        worker.close()
