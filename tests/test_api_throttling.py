"""Throttling and outages behind the API: 429 or 503 with Retry-After, never 502.

SQS (SendMessage, query protocol) answers throttling with HTTP 400 and the code
`RequestThrottled`, `ThrottlingException` or `KmsThrottled`, and outages with 5xx
(`ServiceUnavailable`, `InternalFailure`); DynamoDB (GetItem) answers 400 with
`ProvisionedThroughputExceededException`, `ThrottlingException` or `RequestLimitExceeded`, and
5xx. moto never throttles, so a scripted endpoint on loopback plays SQS and DynamoDB here. Each
answer is checked twice: in the deployed definition (the integration response its selection
patterns pick, its template rendered by the shim's engine and by Apache Velocity 1.7), and in
the shim (in process and served by gunicorn), which must give the very same answer.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import apigw
from tests.apigw import Case, Velocity

ADD = "/tasks/tasks.debug.add"
JOB = "/jobs/{job_id}"
JOB_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def sqs_error(code: str, message: str = "injected") -> str:
    return (
        '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/'
        f'2012-11-05/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}'
        f"</Message><Detail/></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )


def dynamodb_error(kind: str, message: str = "injected") -> str:
    return json.dumps({"__type": kind, "message": message})


DDB = "com.amazonaws.dynamodb.v20120810#"
CORAL = "com.amazon.coral.availability#"
# (label, service, integration status, integration body, expected status)
FAULTS = [
    ("sqs RequestThrottled", "sqs", 400, sqs_error("RequestThrottled"), 429),
    ("sqs ThrottlingException", "sqs", 400, sqs_error("ThrottlingException"), 429),
    ("sqs KmsThrottled", "sqs", 400, sqs_error("KmsThrottled"), 429),
    (
        "sqs ThrottlingException (JSON protocol)",
        "sqs",
        400,
        json.dumps({"__type": "com.amazonaws.sqs#ThrottlingException", "message": "x"}),
        429,
    ),
    ("sqs ServiceUnavailable", "sqs", 503, sqs_error("ServiceUnavailable"), 503),
    ("sqs InternalFailure", "sqs", 500, sqs_error("InternalFailure"), 503),
    (
        "dynamodb ProvisionedThroughputExceededException",
        "dynamodb",
        400,
        dynamodb_error(DDB + "ProvisionedThroughputExceededException"),
        429,
    ),
    (
        "dynamodb ThrottlingException",
        "dynamodb",
        400,
        dynamodb_error(CORAL + "ThrottlingException"),
        429,
    ),
    (
        "dynamodb RequestLimitExceeded",
        "dynamodb",
        400,
        dynamodb_error(DDB + "RequestLimitExceeded"),
        429,
    ),
    (
        "dynamodb InternalServerError",
        "dynamodb",
        500,
        dynamodb_error(DDB + "InternalServerError"),
        503,
    ),
    (
        "dynamodb ServiceUnavailable",
        "dynamodb",
        503,
        dynamodb_error(CORAL + "ServiceUnavailableException"),
        503,
    ),
]
# Refusals that are the deployment's to fix: 502, and no Retry-After (retrying will not help).
FAULTS_502 = [
    ("sqs NonExistentQueue", "sqs", 400, sqs_error("AWS.SimpleQueueService.NonExistentQueue"), 502),
    ("sqs AccessDenied", "sqs", 403, sqs_error("AccessDenied"), 502),
    (
        "dynamodb ResourceNotFoundException",
        "dynamodb",
        400,
        dynamodb_error(DDB + "ResourceNotFoundException"),
        502,
    ),
    (
        "dynamodb AccessDeniedException",
        "dynamodb",
        400,
        dynamodb_error(DDB + "AccessDeniedException"),
        502,
    ),
    (
        "dynamodb UnrecognizedClientException",
        "dynamodb",
        403,
        dynamodb_error(CORAL + "UnrecognizedClientException"),
        502,
    ),
]
ALL = FAULTS + FAULTS_502
IDS = [case[0] for case in ALL]


class ScriptedAws:
    """SQS and DynamoDB on 127.0.0.1 answering what a test scripts, one answer a request."""

    def __init__(self) -> None:
        self.script: dict[str, deque[tuple[int, str]]] = {"sqs": deque(), "dynamodb": deque()}
        self.seen: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, service: str, status: int, body: str) -> None:
        self.script[service].append((status, body))

    def _handler(self):
        aws = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                target = self.headers.get("X-Amz-Target", "")
                service = "dynamodb" if target.startswith("DynamoDB") else "sqs"
                aws.seen.append((service, target or body.split("&", 1)[0]))
                if aws.script[service]:
                    status, text = aws.script[service].popleft()
                elif service == "sqs":
                    status, text = (
                        200,
                        (
                            "<SendMessageResponse><SendMessageResult><MessageId>m"
                            "</MessageId></SendMessageResult></SendMessageResponse>"
                        ),
                    )
                else:
                    status, text = 200, "{}"
                data = text.encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type",
                    "text/xml" if text.startswith("<") else "application/x-amz-json-1.0",
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture(scope="module")
def aws() -> Iterator[ScriptedAws]:
    server = ScriptedAws()
    yield server
    server.close()


@pytest.fixture(scope="module")
def settings(aws):
    from tasks.ops.settings import Settings

    return dataclasses.replace(
        Settings.from_env(),
        sqs_endpoint=aws.url,
        dynamodb_endpoint=aws.url,
        queue_url=None,
        api_keys=(),
    )


@pytest.fixture(scope="module")
def client(settings):
    from api_shim.app import create_app

    return create_app(settings).test_client()


@pytest.fixture(scope="module")
def doc(client) -> dict:
    return client.application.extensions["gateway"].document


@pytest.fixture(scope="module")
def velocity(tmp_path_factory) -> Velocity | None:
    if not apigw.velocity_available():
        return None  # the shim's engine still renders; test_templates.py skips loudly
    return Velocity(tmp_path_factory.mktemp("velocity"))


def route(service: str) -> tuple[str, str, str]:
    return (ADD, "post", ADD) if service == "sqs" else (JOB, "get", f"/jobs/{JOB_ID}")


def deployed_answers(doc: dict, velocity: Velocity | None) -> dict[str, apigw.Answer]:
    """What the deployed definition answers to each scripted fault, rendered by both engines."""
    cases = []
    for _, service, status, body, _ in ALL:
        resource, method, path = route(service)
        cases.append(
            Case(
                apigw.response_template(doc, resource, method, status),
                body=body,
                path=path,
                resource=resource,
                job_id=JOB_ID if service == "dynamodb" else None,
            )
        )
    ours = [apigw.shim_engine(case) for case in cases]
    if velocity is not None:
        assert velocity.render_many(cases) == ours, "Velocity 1.7 and the shim disagree"
    answers = {}
    for (label, service, status, body, _), rendered in zip(ALL, ours, strict=True):
        resource, method, _path = route(service)
        answers[label] = apigw.integration_answer(doc, resource, method, status, body, rendered)
    return answers


@pytest.fixture(scope="module")
def deployed(doc, velocity) -> dict[str, apigw.Answer]:
    return deployed_answers(doc, velocity)


@pytest.mark.parametrize(("label", "service", "status", "body", "expected"), ALL, ids=IDS)
def test_the_deployed_definition_answers_throttling_with_429_or_503(
    deployed, label, service, status, body, expected
):
    answer = deployed[label]
    assert answer.status == expected
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    message = answer.json()["message"]
    assert isinstance(message, str) and message
    if expected in (429, 503):
        assert answer.headers["Retry-After"] == "1"
        assert "retry" in message.lower()
    else:
        assert "Retry-After" not in answer.headers


@pytest.mark.parametrize(("label", "service", "status", "body", "expected"), ALL, ids=IDS)
def test_the_shim_answers_throttling_as_the_deployed_api(
    aws, client, deployed, label, service, status, body, expected
):
    _resource, method, path = route(service)
    aws.answer(service, status, body)
    before = len(aws.seen)
    response = client.post(path, json={"x": 1, "y": 2}) if method == "post" else client.get(path)
    assert response.status_code == expected, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    answer = deployed[label]
    assert response.get_json() == answer.json()
    for name, value in answer.headers.items():
        assert response.headers.get(name) == value, name
    assert ("Retry-After" in response.headers) == ("Retry-After" in answer.headers)
    # One call to the service: API Gateway does not retry an integration, nor does the shim.
    assert [s for s, _ in aws.seen[before:]] == [service]
    assert not aws.script[service]


def test_integration_responses_cover_every_status_once(doc):
    """Each status 400-599 picks exactly one integration response, every 5xx a 503; and no
    two responses share a status code (API Gateway keys integration responses by it)."""
    for resource, method in ((ADD, "post"), (JOB, "get")):
        codes = [
            spec["statusCode"]
            for spec in apigw.integration(doc, resource, method)["responses"].values()
        ]
        assert len(codes) == len(set(codes)), (resource, codes)
        for status in range(400, 600):
            spec = apigw.chosen_response(doc, resource, method, status)
            assert spec is not apigw.integration(doc, resource, method)["responses"]["default"]
            if status >= 500:
                assert spec["statusCode"] == "503"
                assert spec["responseParameters"]["method.response.header.Retry-After"] == "'1'"


def test_retry_after_is_the_same_in_templates_and_parameters(doc):
    from tasks.http_contract.forms import RETRY_AFTER_SECONDS
    from tasks.http_contract.mapping_templates import load_template

    for name in ("send_task.error", "get_job.error"):
        assert (
            f"#set($context.responseOverride.header.Retry-After = '{RETRY_AFTER_SECONDS}')"
        ) in load_template(name)
    gateway = doc["x-amazon-apigateway-gateway-responses"]["THROTTLED"]
    assert (
        gateway["responseParameters"]["gatewayresponse.header.Retry-After"]
        == f"'{RETRY_AFTER_SECONDS}'"
    )


def test_gunicorn_serves_the_same_429_and_503(aws, settings, deployed):
    """The shim as `make run` serves it: a separate process, over HTTP."""
    import os

    from tests.http_shim import http, launch_shim, stop_shim

    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_SQS": aws.url,
        "AWS_ENDPOINT_URL_DYNAMODB": aws.url,
        "JOBS_API_KEYS": "",
    }
    env.pop("JOBS_QUEUE_URL", None)
    shim = launch_shim(env, "throttling")
    try:
        for label, service, status, body, expected in (FAULTS[0], FAULTS[4], FAULTS[6], FAULTS[9]):
            _, method, path = route(service)
            aws.answer(service, status, body)
            got = http(
                method.upper(), shim.url + path, {"x": 1, "y": 2} if method == "post" else None
            )
            assert got.status == expected, (label, got.body)
            assert got.body == deployed[label].json()
            assert got.headers["Retry-After"] == "1"
            assert got.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        stop_shim(shim)
