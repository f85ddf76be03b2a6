"""Bad requests: each gets a clear 4xx JSON error, and nothing reaches the queue.

The shim runs in process (Flask's test client) against moto's server; no worker runs in this
module, so the queue's message count shows exactly what a request enqueued.
"""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.integration

ADD = "/tasks/tasks.debug.add"
ANALYZE = "/tasks/tasks.text.analyze"


@pytest.fixture(scope="module")
def make_app(stack):
    from api_shim.app import create_app
    from tasks.ops.settings import Settings

    def make(**overrides):
        settings = dataclasses.replace(Settings.from_env(), **overrides)
        return create_app(settings)

    return make


@pytest.fixture(scope="module")
def client(make_app):
    return make_app().test_client()


@pytest.fixture(scope="module")
def keyed(make_app):
    return make_app(api_keys=("key-one", "key-two")).test_client()


def queued(stack) -> int:
    visible, in_flight = stack.queue_counts()
    return visible + in_flight


def take_message(stack, job_id: str) -> str:
    """Receive and delete the message of `job_id`; its SQS body."""

    def receive():
        for message in stack.sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10
        ).get("Messages", []):
            envelope = json.loads(base64.b64decode(message["Body"]))
            if envelope["headers"]["id"] == job_id:
                stack.sqs.delete_message(
                    QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                return message["Body"]
            # Someone else's message: put it back at once.
            stack.sqs.change_message_visibility(
                QueueUrl=stack.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )
        return None

    return wait_until(receive, 10, message=f"message of job {job_id}")


def assert_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = response.get_json()
    assert isinstance(body.get("message"), str) and body["message"]
    text = json.dumps(body).lower()
    for word in words:
        assert word.lower() in text, (word, body)
    return body


def test_a_good_request_is_enqueued(stack, client):
    """The control: the queue count below does move when a job is accepted."""
    before = queued(stack)
    response = client.post(ADD, json={"x": 1, "y": 2})
    assert response.status_code == 202
    assert queued(stack) == before + 1
    take_message(stack, response.get_json()["job_id"])
    assert queued(stack) == before


BAD_BODIES = [
    ("invalid JSON", b'{"x": 1,', "not valid JSON"),
    ("empty body", b"", "not valid JSON"),
    ("not UTF-8", b'{"x": "\xff"}', "not valid JSON"),
    ("NaN", b'{"x": NaN, "y": 1}', "not valid JSON"),
    ("array", b"[1, 2]", "is not of type 'object'"),
    ("string", b'"x"', "is not of type 'object'"),
    ("null", b"null", "is not of type 'object'"),
    ("number", b"42", "is not of type 'object'"),
    ("missing field", b'{"x": 1}', "'y' is a required property"),
    ("extra field", b'{"x": 1, "y": 2, "z": 3}', "Additional properties"),
    ("wrong type", b'{"x": "1", "y": 2}', "x: is not of type 'number'"),
]


@pytest.mark.parametrize(("case", "body", "detail"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_are_400(stack, client, case, body, detail):
    before = queued(stack)
    answer = assert_error(
        client.post(ADD, data=body, content_type="application/json"), 400, "Invalid request body"
    )
    assert any(detail in e for e in answer["errors"]), answer
    assert queued(stack) == before


@pytest.mark.parametrize(
    "path", ["/tasks/no.such.task", "/tasks/tests.jobs.crash", "/tasks/tests.jobs.flaky", "/tasks/"]
)
def test_unknown_and_private_tasks_are_404(stack, client, path):
    before = queued(stack)
    assert_error(client.post(path, json={}), 404)
    assert queued(stack) == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_content_type_is_415(stack, client, content_type):
    before = queued(stack)
    assert_error(
        client.post(ADD, data=b'{"x": 1, "y": 2}', content_type=content_type),
        415,
        "application/json",
    )
    assert queued(stack) == before


def test_body_size_limit_is_sqs_own_and_the_message_fits(stack, client):
    """A valid body is refused (413, saying the task's limit) exactly when its message would be
    over SQS's maximum, as SQS itself refuses it; every body up to that limit fits."""
    import urllib.parse

    from tasks.http_contract.forms import SAMPLE_ID
    from tasks.http_contract.vtl import Params, render
    from tasks.ops.provision import MAX_MESSAGE_BYTES

    gateway = client.application.extensions["gateway"]
    limit = gateway.max_body["tasks.text.analyze"]
    template = gateway.operation(ANALYZE, "post")["x-amazon-apigateway-integration"][
        "requestTemplates"
    ]["application/json"]
    frame = len(b'{"text": ""}')

    def body(size: int) -> bytes:
        # Two-byte characters, so the text stays within the schema's 500,000 characters.
        chars, odd = divmod(size - frame, 2)
        return json.dumps({"text": "é" * chars + "a" * odd}, ensure_ascii=False).encode()

    def message_bytes(size: int) -> int:
        # requestTimeEpoch: the `submitted_at` header, 13 digits as on every real request.
        form = render(
            template,
            body=body(size).decode(),
            params=Params(),
            context={"requestId": SAMPLE_ID, "requestTimeEpoch": 1_790_000_000_000},
        ).text
        return len(urllib.parse.parse_qs(form)["MessageBody"][0].encode())

    # The largest body whose message SQS takes: a binary search over the rendered message.
    low, high = limit, limit + 20_000
    assert message_bytes(low) <= MAX_MESSAGE_BYTES < message_bytes(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if message_bytes(middle) <= MAX_MESSAGE_BYTES else (low, middle)

    before = queued(stack)
    refused = body(high)
    assert len(refused) == high
    answer = assert_error(
        client.post(ANALYZE, data=refused, content_type="application/json"),
        413,
        "too large",
        f"at most {limit} bytes",
    )
    assert "errors" not in answer
    assert queued(stack) == before

    for size in (limit, low):
        fits = body(size)
        response = client.post(ANALYZE, data=fits, content_type="application/json")
        assert response.status_code == 202, response.get_json()
        message = take_message(stack, response.get_json()["job_id"])
        assert len(message.encode()) <= MAX_MESSAGE_BYTES
        inner = base64.b64decode(json.loads(base64.b64decode(message))["body"])
        assert json.loads(inner)[1] == json.loads(fits)


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-uuid",
        "123",
        "3fa85f64-5717-4562-b3fc-2c963f66afaZ",
        "3fa85f64-5717-4562-b3fc-2c963f66afa6-extra",
        "x" * 3000,
    ],
)
def test_malformed_job_id_is_400(client, job_id):
    assert_error(client.get(f"/jobs/{job_id}"), 400, "UUID")


def test_api_key_is_required_when_configured(stack, keyed):
    before = queued(stack)
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}):
        body = assert_error(keyed.post(ADD, json={"x": 1, "y": 2}, headers=headers), 403)
        assert body == {"message": "Forbidden"}
        assert_error(keyed.get("/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6", headers=headers), 403)
        assert_error(keyed.get("/tasks", headers=headers), 403)
    assert queued(stack) == before
    preflight = keyed.options(
        ADD, headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    response = keyed.post(ADD, json={"x": 1, "y": 2}, headers={"x-api-key": "key-two"})
    assert response.status_code == 202
    take_message(stack, response.get_json()["job_id"])
    doc = keyed.get("/openapi.json").get_json()
    assert doc["paths"][ADD]["post"]["security"] == [{"api_key": []}]


def test_unknown_routes_and_methods_are_json_404(client):
    """API Gateway answers an unknown resource or method with MISSING_AUTHENTICATION_TOKEN,
    which the document maps to 404 {"message": "Not Found"}."""
    for response in (
        client.get("/nothing/here"),
        client.put(ADD, json={}),
        client.get(ADD),
        client.post("/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        client.post("/tasks/a/b", json={}),
        client.delete("/tasks"),
    ):
        assert assert_error(response, 404) == {"message": "Not Found"}


def test_sqs_refusals_are_mapped_as_api_gateway_would(stack, make_app):
    """SQS's own answers go through the integration responses: 400 too long -> 413, else 502."""
    small = stack.sqs.create_queue(
        QueueName=f"{stack.table}-small", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    try:
        client = make_app(queue_name=f"{stack.table}-small", queue_url=small).test_client()
        assert_error(client.post(ADD, json={"x": 1, "y": 2}), 413, "too large")
        missing = make_app(
            queue_name=f"{stack.table}-missing",
            queue_url=small.rsplit("/", 1)[0] + f"/{stack.table}-missing",
        )
        assert_error(missing.test_client().post(ADD, json={"x": 1, "y": 2}), 502, "did not accept")
    finally:
        stack.sqs.delete_queue(QueueUrl=small)


def test_http_message_is_shaped_like_the_projects_own_delay(stack, client):
    """`tasks.debug.add.delay()` and POST /tasks/tasks.debug.add, side by side on one queue."""
    from tasks.debug import add

    def envelope(body: str) -> dict:
        return json.loads(base64.b64decode(body))

    real = envelope(take_message(stack, add.delay(x=1, y=2).id))
    response = client.post(ADD, data=b'{"x": 1, "y": 2}', content_type="application/json")
    ours = envelope(take_message(stack, response.get_json()["job_id"]))
    assert list(ours) == list(real)
    assert list(ours["headers"]) == list(real["headers"])
    assert list(ours["properties"]) == list(real["properties"])
    same = set(real["headers"]) - {"id", "root_id", "origin", "kwargsrepr", "submitted_at"}
    assert isinstance(ours["headers"]["submitted_at"], int)  # epoch ms, as delay() sends
    assert {k: ours["headers"][k] for k in same} == {k: real["headers"][k] for k in same}
    assert ours["properties"]["delivery_info"] == real["properties"]["delivery_info"]
    for key in ("delivery_mode", "priority", "body_encoding"):
        assert ours["properties"][key] == real["properties"][key]
    assert base64.b64decode(ours["body"]) == base64.b64decode(real["body"])
