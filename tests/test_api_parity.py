"""Every answer of the API, given by the shim and configured in the deployed definition alike.

One test per row of the parity table in docs/http-api.md. Each sends the request to the shim
(Flask in process, against moto's server) and reads the same answer out of the OpenAPI
document `ecs` deploys (tests/apigw.py: the route, the gateway response or the integration
response its selection patterns pick, its template rendered by the shim's engine and, when
installed, by Apache Velocity 1.7), then asserts both give the same status, body and headers.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
import uuid

import pytest
from jsonschema import Draft4Validator

from tests import apigw
from tests.apigw import Case, Velocity

pytestmark = pytest.mark.integration

ADD = "/tasks/tasks.debug.add"
ANALYZE = "/tasks/tasks.text.analyze"
JOB = "/jobs/{job_id}"
CORS_NAMES = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Max-Age",
    "Retry-After",
)


@pytest.fixture(scope="module")
def make_app(stack):
    from api_shim.app import create_app
    from tasks.ops.settings import Settings

    def make(**overrides):
        return create_app(dataclasses.replace(Settings.from_env(), **overrides))

    return make


@pytest.fixture(scope="module")
def client(make_app):
    return make_app(api_keys=()).test_client()


@pytest.fixture(scope="module")
def keyed(make_app):
    return make_app(api_keys=("key-one",)).test_client()


@pytest.fixture(scope="module")
def doc(client) -> dict:
    return client.application.extensions["gateway"].document


@pytest.fixture(scope="module")
def keyed_doc(keyed) -> dict:
    return keyed.application.extensions["gateway"].document


@pytest.fixture(scope="module")
def velocity(tmp_path_factory) -> Velocity | None:
    return Velocity(tmp_path_factory.mktemp("velocity")) if apigw.velocity_available() else None


def rendered_by_both(velocity: Velocity | None, case: Case) -> apigw.Rendered:
    ours = apigw.shim_engine(case)
    if velocity is not None:
        assert velocity.render_many([case])[0] == ours
    return ours


def assert_same(response, answer: apigw.Answer, *, extra_body: tuple[str, ...] = ()) -> dict:
    """The shim's response is the deployed answer: status, JSON body, CORS and Retry-After."""
    assert response.status_code == answer.status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json() if response.get_data() else None
    expected = answer.json() if answer.body else None
    if extra_body:
        body = {k: v for k, v in body.items() if k not in extra_body}
    assert body == expected
    for name in CORS_NAMES:
        assert response.headers.get(name) == answer.headers.get(name), name
    return response.get_json() if response.get_data() else {}


def queued(stack) -> int:
    visible, in_flight = stack.queue_counts()
    return visible + in_flight


# --- API Gateway's own answers ---------------------------------------------------------------
def test_missing_or_wrong_api_key_is_403(stack, keyed, keyed_doc):
    answer = apigw.gateway_answer(keyed_doc, "INVALID_API_KEY")
    assert (answer.status, answer.json()) == (403, {"message": "Forbidden"})
    for resource, method in (
        (ADD, "post"),
        ("/tasks/{name}", "post"),
        (JOB, "get"),
        (JOB, "delete"),
        ("/tasks", "get"),
    ):
        assert keyed_doc["paths"][resource][method]["security"] == [{"api_key": []}]
    before = queued(stack)
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}):
        # The key comes first: before the route's own 404, the content type and the schema.
        assert_same(
            keyed.post(ADD, data=b"not json", content_type="text/plain", headers=headers), answer
        )
        assert_same(keyed.post("/tasks/no.such.task", json={}, headers=headers), answer)
        assert_same(keyed.get("/jobs/not-a-uuid", headers=headers), answer)
        assert_same(keyed.get("/tasks", headers=headers), answer)
        job_id = str(uuid.uuid4())
        assert_same(keyed.delete(f"/jobs/{job_id}", headers=headers), answer)
        assert stack.item(job_id) is None  # nothing was revoked
    assert queued(stack) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin"),
        ("PUT", ADD),
        ("GET", ADD),
        ("PATCH", "/jobs/" + str(uuid.uuid4())),
        ("DELETE", ADD),
        ("DELETE", "/tasks"),
        ("POST", "/tasks/a/b"),
        ("POST", "/"),
        ("POST", "/tasks/"),
        ("PUT", "/jobs"),
    ],
)
def test_unknown_route_or_method_is_404(client, keyed, doc, method, path):
    """No such resource or method: API Gateway's MISSING_AUTHENTICATION_TOKEN (403 by
    default), which the document maps to 404 {"message": "Not Found"}, key or no key."""
    answer = apigw.gateway_answer(doc, "MISSING_AUTHENTICATION_TOKEN")
    assert (answer.status, answer.json()) == (404, {"message": "Not Found"})
    assert apigw.resolve(doc, method, path) is None
    assert_same(client.open(path, method=method, json={}), answer)
    assert_same(keyed.open(path, method=method, json={}), answer)


@pytest.mark.parametrize(
    "path", ["/tasks/no.such.task", "/tasks/tests.jobs.crash", "/tasks/celery.chord_unlock"]
)
def test_unknown_or_private_task_is_404(stack, client, doc, velocity, path):
    """POST /tasks/{name} for a name that is not a public task: a mock integration's 404."""
    assert path not in doc["paths"]
    mock = apigw.integration(doc, "/tasks/{name}", "post")
    assert mock["type"] == "mock"
    status = json.loads(mock["requestTemplates"]["application/json"])["statusCode"]
    rendered = rendered_by_both(
        velocity, Case(apigw.response_template(doc, "/tasks/{name}", "post", status))
    )
    answer = apigw.integration_answer(doc, "/tasks/{name}", "post", status, "", rendered)
    assert answer.status == 404 and "Unknown task" in answer.json()["message"]
    before = queued(stack)
    # The route comes before the content type and the body: a mock takes anything.
    assert_same(client.post(path, json={}), answer)
    assert_same(client.post(path, data=b"x", content_type="text/plain"), answer)
    assert queued(stack) == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_content_type_is_415(stack, client, doc, content_type):
    integration = apigw.integration(doc, ADD, "post")
    assert integration["passthroughBehavior"] == "never"
    assert content_type not in integration["requestTemplates"]
    answer = apigw.gateway_answer(doc, "UNSUPPORTED_MEDIA_TYPE")
    assert answer.status == 415 and "application/json" in answer.json()["message"]
    before = queued(stack)
    # Before the schema: this body would also fail it.
    assert_same(client.post(ADD, data=b'{"x": "not a number"}', content_type=content_type), answer)
    assert queued(stack) == before


def validates(doc: dict, resource: str, body: bytes) -> bool:
    operation = doc["paths"][resource]["post"]
    validator = doc["x-amazon-apigateway-request-validators"][
        operation["x-amazon-apigateway-request-validator"]
    ]
    assert validator["validateRequestBody"] is True
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    model = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return Draft4Validator(model).is_valid(json.loads(body))


@pytest.mark.parametrize(
    ("label", "path", "body"),
    [
        ("missing field", ADD, b'{"x": 1}'),
        ("wrong type", ADD, b'{"x": "1", "y": 2}'),
        (
            "700 KB over the schema's maxLength",
            ANALYZE,
            json.dumps({"text": "a" * 700_000}).encode(),
        ),
        (
            "700 KB with an unknown field",
            ANALYZE,
            json.dumps({"text": "é" * 350_000, "extra": 1}, ensure_ascii=False).encode(),
        ),
    ],
)
def test_schema_violation_is_400_before_the_size_limit(stack, client, doc, label, path, body):
    """API Gateway validates the body against the model before the integration: a body that
    breaks the schema is 400 even when it is also too large for one queue message."""
    assert not validates(doc, path, body)
    answer = apigw.gateway_answer(doc, "BAD_REQUEST_BODY")
    assert (answer.status, answer.json()) == (400, {"message": "Invalid request body"})
    before = queued(stack)
    got = assert_same(
        client.post(path, data=body, content_type="application/json"),
        answer,
        extra_body=("errors",),
    )
    # The shim alone adds its validator's reasons (API Gateway's wording differs).
    assert got["errors"] and all("(model " in e for e in got["errors"])
    assert queued(stack) == before


def test_valid_body_too_large_for_one_message_is_413_saying_the_limit(stack, client, doc, velocity):
    body = json.dumps({"text": "é" * 350_000}, ensure_ascii=False).encode()  # 700 KB, valid
    assert validates(doc, ANALYZE, body)
    limit = client.application.extensions["gateway"].max_body["tasks.text.analyze"]
    assert len(body) > limit
    # On AWS, SQS refuses the message with 400 "... must be shorter than 1048576 bytes".
    from api_shim.gateway import SQS_TOO_LONG

    refusal = SQS_TOO_LONG.format(limit=1048576, request_id="r")
    rendered = rendered_by_both(
        velocity, Case(apigw.response_template(doc, ANALYZE, "post", 400), body=refusal)
    )
    answer = apigw.integration_answer(doc, ANALYZE, "post", 400, refusal, rendered)
    assert answer.status == 413 and f"at most {limit} bytes" in answer.json()["message"]
    assert "Retry-After" not in answer.headers
    before = queued(stack)
    assert_same(client.post(ANALYZE, data=body, content_type="application/json"), answer)
    assert queued(stack) == before


def test_body_over_api_gateways_10_mb_is_413_first(stack, keyed, keyed_doc):
    answer = apigw.gateway_answer(keyed_doc, "REQUEST_TOO_LARGE")
    assert (answer.status, answer.json()) == (413, {"message": "Request Too Long"})
    before = queued(stack)
    # Before the API key and the route: the payload limit is API Gateway's first check.
    huge = b'{"text": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    assert_same(keyed.post(ANALYZE, data=huge, content_type="application/json"), answer)
    assert_same(keyed.post("/nowhere", data=huge, content_type="application/json"), answer)
    assert queued(stack) == before


# --- the integrations ----------------------------------------------------------------------
def get_item_answer(doc: dict, velocity: Velocity | None, stack, job_id: str) -> apigw.Answer:
    """GET /jobs/{id} as deployed: the request template's GetItem, sent to DynamoDB (moto),
    and the integration response its status picks, rendered by both engines."""
    spec = apigw.integration(doc, JOB, "get")
    request = rendered_by_both(
        velocity, Case(spec["requestTemplates"]["application/json"], job_id=job_id)
    )
    item = stack.dynamodb.get_item(**json.loads(request.text))
    body = json.dumps({"Item": item["Item"]} if "Item" in item else {})
    rendered = rendered_by_both(
        velocity, Case(apigw.response_template(doc, JOB, "get", 200), body=body, job_id=job_id)
    )
    return apigw.integration_answer(doc, JOB, "get", 200, body, rendered)


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-uuid",
        "3fa85f64-5717-4562-b3fc-2c963f66afaZ",
        "x" * 300,
        "3fa85f64-5717-4562-b3fc-2c963f66afa6%22%7D",
    ],
)
def test_malformed_job_id_is_400(stack, client, doc, velocity, job_id):
    decoded = urllib.parse.unquote(job_id)
    answer = get_item_answer(doc, velocity, stack, decoded)
    assert answer.status == 400 and "UUID" in answer.json()["message"]
    assert_same(client.get(f"/jobs/{job_id}"), answer)


def test_unknown_job_is_200_pending(stack, client, doc, velocity):
    job_id = str(uuid.uuid4())
    answer = get_item_answer(doc, velocity, stack, job_id)
    assert (answer.status, answer.json()) == (200, {"job_id": job_id, "status": "PENDING"})
    assert_same(client.get(f"/jobs/{job_id}"), answer)


def test_known_job_is_200_with_its_record(stack, client, doc, velocity):
    job_id = str(uuid.uuid4())
    stack.dynamodb.put_item(
        TableName=stack.table,
        Item={
            "job_id": {"S": job_id},
            "status": {"S": "SUCCESS"},
            "task": {"S": "tasks.debug.add"},
            "result": {"S": "5"},
            "attempts": {"N": "1"},
            "created_at": {"S": "2026-01-01T00:00:00.000Z"},
        },
    )
    answer = get_item_answer(doc, velocity, stack, job_id)
    assert answer.status == 200 and answer.json()["result"] == 5
    assert_same(client.get(f"/jobs/{job_id}"), answer)


def test_submission_is_202_with_the_job_id(stack, client, doc, velocity):
    rendered = rendered_by_both(
        velocity,
        Case(
            apigw.response_template(doc, ADD, "post", 200), request_id="rid", path=ADD, resource=ADD
        ),
    )
    answer = apigw.integration_answer(doc, ADD, "post", 200, "", rendered)
    assert answer.status == 202 and answer.json()["status_url"] == "/jobs/rid"
    response = client.post(ADD, json={"x": 1, "y": 2})
    job_id = response.get_json()["job_id"]
    stack.drain(stack.queue_url)
    assert_same(response, dataclasses.replace(answer, body=answer.body.replace("rid", job_id)))


def test_catalog_is_200_with_the_public_tasks(client, doc, velocity):
    """GET /tasks: a mock integration whose template is the catalog."""
    mock = apigw.integration(doc, "/tasks", "get")
    assert mock["type"] == "mock"
    status = json.loads(mock["requestTemplates"]["application/json"])["statusCode"]
    rendered = rendered_by_both(
        velocity, Case(apigw.response_template(doc, "/tasks", "get", status))
    )
    answer = apigw.integration_answer(doc, "/tasks", "get", status, "", rendered)
    assert answer.status == 200 and {t["name"] for t in answer.json()["tasks"]} >= {
        "tasks.debug.add",
        "tasks.text.analyze",
    }
    assert_same(client.get("/tasks"), answer)


def dynamodb_raw(stack, operation: str, body: str) -> tuple[int, str]:
    """A DynamoDB call as API Gateway's integration makes it: the rendered JSON, signed; the
    HTTP status and body as DynamoDB answers them (an error's body included)."""
    import urllib.error
    import urllib.request

    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(
        method="POST",
        url=stack.endpoint + "/",
        data=body.encode(),
        headers={
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    SigV4Auth(
        boto3.session.Session().get_credentials().get_frozen_credentials(), "dynamodb", "us-east-1"
    ).add_auth(request)
    prepared = request.prepare()
    sent = urllib.request.Request(
        prepared.url, data=prepared.body, method="POST", headers=dict(prepared.headers)
    )
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def revoke_answer(doc: dict, velocity: Velocity | None, stack, job_id: str) -> apigw.Answer:
    """DELETE /jobs/{id} as deployed: the request template's UpdateItem (rendered by both
    engines, at this request's time), sent to DynamoDB (moto), and the integration response
    its status picks, rendered by both engines."""
    import time

    from api_shim.gateway import _request_time

    spec = apigw.integration(doc, JOB, "delete")
    assert spec["uri"].endswith(":dynamodb:action/UpdateItem")
    now = time.time()
    request = rendered_by_both(
        velocity,
        Case(
            spec["requestTemplates"]["application/json"],
            job_id=job_id,
            request_time_epoch=int(now * 1000),
            request_time=_request_time(now),
        ),
    )
    status, body = dynamodb_raw(stack, "UpdateItem", request.text)
    rendered = rendered_by_both(
        velocity,
        Case(apigw.response_template(doc, JOB, "delete", status), body=body, job_id=job_id),
    )
    return apigw.integration_answer(doc, JOB, "delete", status, body, rendered)


def put_record(stack, job_id: str, status: str, **attributes: str) -> dict:
    item = {
        "job_id": {"S": job_id},
        "status": {"S": status},
        "task": {"S": "tasks.debug.add"},
        "created_at": {"S": "2026-01-01T00:00:00.000Z"},
        **{k: {"S": v} for k, v in attributes.items()},
    }
    stack.dynamodb.put_item(TableName=stack.table, Item=item)
    return item


@pytest.mark.parametrize("existing", [None, "STARTED", "PROGRESS", "RETRY"])
def test_revoking_a_job_that_has_not_finished_is_200_with_the_revoked_record(
    stack, client, doc, velocity, existing
):
    """DELETE /jobs/{id}: the state machine's revoke in one UpdateItem (ALL_NEW). Deployed
    first, then the shim: the shim's DELETE finds it REVOKED and answers the same record; and
    the other way round on a second job."""
    for first in ("deployed", "shim"):
        job_id = str(uuid.uuid4())
        if existing:
            put_record(stack, job_id, existing, started_at="2026-01-01T00:00:01.000Z")
        if first == "shim":
            shim_first = client.delete(f"/jobs/{job_id}")
        answer = revoke_answer(doc, velocity, stack, job_id)
        record = answer.json()
        assert answer.status == 200 and record["status"] == "REVOKED"
        assert record["job_id"] == job_id and record["revoked_at"] == record["finished_at"]
        assert stack.item(job_id)["error"]["M"]["type"]["S"] == "TaskRevokedError"
        if existing:
            assert record["started_at"] == "2026-01-01T00:00:01.000Z"  # the rest is kept
        assert_same(shim_first if first == "shim" else client.delete(f"/jobs/{job_id}"), answer)


@pytest.mark.parametrize("finished", ["SUCCESS", "FAILURE"])
def test_revoking_a_finished_job_is_409_with_its_record_unchanged(
    stack, client, doc, velocity, finished
):
    job_id = str(uuid.uuid4())
    put_record(stack, job_id, finished, result="5", finished_at="2026-01-01T00:00:02.000Z")
    before = stack.item(job_id)
    answer = revoke_answer(doc, velocity, stack, job_id)
    assert answer.status == 409 and answer.json()["status"] == finished
    assert_same(client.delete(f"/jobs/{job_id}"), answer)
    assert stack.item(job_id) == before


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-uuid",
        "3fa85f64-5717-4562-b3fc-2c963f66afaZ",
        "3fa85f64-5717-4562-b3fc-2c963f66afa6%22%7D",
    ],
)
def test_revoking_a_malformed_job_id_is_400_and_writes_nothing(
    stack, client, doc, velocity, job_id
):
    decoded = urllib.parse.unquote(job_id)
    before = stack.dynamodb.scan(TableName=stack.table, Select="COUNT")["Count"]
    answer = revoke_answer(doc, velocity, stack, decoded)
    assert answer.status == 400 and "UUID" in answer.json()["message"]
    assert_same(client.delete(f"/jobs/{job_id}"), answer)
    assert stack.dynamodb.scan(TableName=stack.table, Select="COUNT")["Count"] == before


# --- CORS ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ("/tasks", "/tasks"),
        (ADD, ADD),
        ("/tasks/{name}", "/tasks/no.such.task"),
        (JOB, f"/jobs/{uuid.uuid4()}"),
        (JOB, "/jobs/not-a-uuid"),
    ],
)
def test_cors_preflight_is_the_deployed_mock(client, keyed, doc, keyed_doc, resource, path):
    """OPTIONS: the document's mock integration, with its headers, never behind the key."""
    answer = apigw.preflight_answer(doc, resource)
    assert answer.status == 200
    methods = {m.upper() for m in doc["paths"][resource]} | {"OPTIONS"}
    assert set(answer.headers["Access-Control-Allow-Methods"].split(",")) == methods
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert {"content-type", "x-api-key"} <= set(
        answer.headers["Access-Control-Allow-Headers"].lower().split(",")
    )
    assert "security" not in keyed_doc["paths"][resource]["options"]
    headers = {
        "Origin": "http://example.test",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    for shim in (client, keyed):
        response = shim.options(path, headers=headers)
        assert response.status_code == answer.status
        assert response.get_data() == answer.body.encode()
        for name in CORS_NAMES:
            assert response.headers.get(name) == answer.headers.get(name), name


def test_every_error_answer_carries_the_gateway_responses_cors(doc):
    """API Gateway's own errors all carry the CORS headers, so a browser can read them."""
    responses = doc["x-amazon-apigateway-gateway-responses"]
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for kind, spec in responses.items():
        headers = apigw.literal_headers(spec["responseParameters"], "gatewayresponse.header.")
        assert headers["Access-Control-Allow-Origin"] == "*", kind
        assert "X-Api-Key" in headers["Access-Control-Allow-Headers"], kind
    for resource, operations in doc["paths"].items():
        for method, operation in operations.items():
            for pattern, spec in operation["x-amazon-apigateway-integration"]["responses"].items():
                assert (
                    spec["responseParameters"]["method.response.header.Access-Control-Allow-Origin"]
                    == "'*'"
                ), (resource, method, pattern)


@pytest.mark.parametrize(
    ("method", "path", "resource"),
    [
        ("POST", ADD, ADD),
        ("POST", "/tasks/no.such.task", "/tasks/{name}"),
        ("OPTIONS", "/tasks/no.such.task", "/tasks/{name}"),
        ("GET", "/tasks", "/tasks"),
        ("GET", "/jobs/anything", JOB),
        ("POST", "/tasks/tasks.debug.add%00", "/tasks/{name}"),
        ("GET", "/jobs/a%2Fb", JOB),
        ("GET", "/jobs/a/b", None),
        ("POST", "/tasks", None),
    ],
)
def test_the_shim_routes_as_the_deployed_resources(client, doc, method, path, resource):
    """Literal resources win over `{param}` ones; a parameter is one path segment."""
    from api_shim.gateway import Incoming

    assert apigw.resolve(doc, method, path) == resource
    route = client.application.extensions["gateway"].resolve(
        Incoming(method=method, path=urllib.parse.unquote(path), raw_path=path)
    )
    assert (route.resource if route else None) == resource


def test_the_document_survives_import_into_api_gateway(doc, monkeypatch):
    """`ecs` imports the document with PutRestApi. API Gateway keys integration responses by
    status code, so two sharing one would silently lose one: read every one back (moto)."""
    import boto3
    from moto import mock_aws

    from tests.test_ecs_deploy import allow_mock_integrations

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # moto in this process, not the server
    allow_mock_integrations(monkeypatch)  # mock integrations need no uri on AWS
    with mock_aws():
        apigateway = boto3.client("apigateway", region_name="us-east-1")
        api = apigateway.create_rest_api(name="parity")["id"]
        apigateway.put_rest_api(
            restApiId=api, mode="overwrite", failOnWarnings=True, body=json.dumps(doc).encode()
        )
        resources = {
            r["path"]: r["id"] for r in apigateway.get_resources(restApiId=api, limit=500)["items"]
        }
        for resource, operations in doc["paths"].items():
            for method, operation in operations.items():
                deployed = apigateway.get_integration(
                    restApiId=api, resourceId=resources[resource], httpMethod=method.upper()
                )
                expected = {
                    spec["statusCode"]: (None if pattern == "default" else pattern)
                    for pattern, spec in operation["x-amazon-apigateway-integration"][
                        "responses"
                    ].items()
                }
                got = {
                    code: spec.get("selectionPattern")
                    for code, spec in deployed.get("integrationResponses", {}).items()
                }
                assert got == expected, (resource, method)
