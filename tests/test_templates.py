"""The mapping templates, rendered by the shim's engine and read back as kombu and Celery read.

No server: the POST template is rendered for many bodies and the SQS message it makes is
decoded through kombu's own SQS channel code; the envelope is compared with a real
`.delay()` message; the GET templates map DynamoDB items to the job JSON. When Apache
Velocity 1.7 (API Gateway's engine) is installed, the same templates render byte-identically.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

import tasks  # noqa: F401  (registers the jobs)
from tasks.http_contract.forms import AwsTargets, model_name
from tasks.http_contract.mapping_templates import fill_template, load_template, template_path
from tasks.http_contract.openapi import build_openapi
from tasks.http_contract.routes import catalog_json
from tasks.http_contract.vtl import Params, escape_javascript, render
from tasks.jobkit.registry import all_jobs
from tests.apigw import parse_overrides

TARGETS = AwsTargets(
    region="eu-west-1",
    account_id="123456789012",
    queue_name="jobs-q",
    table_name="jobs-t",
    role_arn="arn:aws:iam::123456789012:role/apigw",
)
POST_TEMPLATE = fill_template(
    "send_task.request", task_name="tasks.debug.add", queue_name=TARGETS.queue_name
)
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

BODIES = [
    {},
    {"x": 1, "y": 2},
    {"s": "double \" quote and single ' quote"},
    {"s": "back\\slash \\n not a newline \\u0041 \\\\"},
    {"s": "new\nline\ttab\rreturn\x00nul\x1fcontrol\x7fdel"},
    {"s": "unicode: é ß 中文 العربية हिन्दी"},
    {"s": "emoji: 😀 👩‍👩‍👧 🏳️‍🌈 𝄞"},
    {"s": "velocity: $x ${x} $!x #set($a = 1) #if(true) ## comment #* block *# \\$ \\#"},
    {"s": "url-ish: & % + = ? / %41 %%  a+b=c&d"},
    {"s": "html: <script>alert('x')</script> </a> &amp;"},
    {"s": "x" * 200_000},
    {"s": "é😀'\"\\" * 400},
    {"nested": {"a": [1, {"b": [None, True, False, {"c": "d"}]}], "e": {}}},
    {"list": [], "numbers": [0, -1, 1.5, 1e-7, 12345678901234567890, -0.0]},
    {"t": True, "f": False, "n": None},
    {"": "empty key", "key with spaces": 1, "ключ": "значение"},
]
RAW_BODIES = [
    '{"x":1,"y":2}',
    '{\n  "pretty": [1,\n 2],\t"tabs": "yes"\n}\n',
    '  {"leading": "and trailing whitespace"}  ',
    '{"escaped": "\\u00e9\\ud83d\\ude00\\/\\b\\f"}',
    '{"x": 1.0, "y": 2.50, "z": 1E3}',
]


# $context.requestTimeEpoch: API Gateway's request time, epoch milliseconds.
EPOCH_MS = 1_790_000_000_123


def render_post(
    body: str, request_id: str, template: str = POST_TEMPLATE, headers: dict[str, str] | None = None
) -> str:
    return render(
        template,
        body=body,
        params=Params(header=headers or {}),
        context={"requestId": request_id, "requestTimeEpoch": EPOCH_MS},
    ).text


def sqs_message_body(rendered: str) -> str:
    """The MessageBody SQS stores, parsed from the form the template writes."""
    fields = urllib.parse.parse_qs(rendered, keep_blank_values=True, strict_parsing=True)
    assert set(fields) == {"Action", "MessageBody"}, rendered[:200]
    assert fields["Action"] == ["SendMessage"]
    return fields["MessageBody"][0]


@pytest.fixture(scope="module")
def kombu_channel():
    """A real kombu SQS channel; only its message-decoding code is used (no network)."""
    from kombu import Connection

    conn = Connection(
        "sqs://",
        transport_options={
            "region": "eu-west-1",
            "predefined_queues": {"jobs-q": {"url": "https://sqs.example/123456789012/jobs-q"}},
        },
    )
    channel = conn.default_channel
    yield channel
    conn.release()


def kombu_decode(channel, message_body: str):
    """What a worker gets: kombu's SQS payload, as a kombu Message, decoded by Celery rules."""
    sqs_message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": "rh",
        "Body": message_body,
        "Attributes": {"ApproximateReceiveCount": "1"},
    }
    payload = channel._message_to_python(
        sqs_message, "jobs-q", "https://sqs.example/123456789012/jobs-q"
    )
    message = channel.Message(payload, channel=channel)
    return message, message.decode()


@pytest.mark.parametrize("value", BODIES, ids=lambda v: json.dumps(v)[:40])
@pytest.mark.parametrize("style", ["compact", "spaced"])
def test_kwargs_survive_exactly(kombu_channel, value, style):
    body = (
        json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if style == "compact"
        else json.dumps(value, indent=2)
    )
    job_id = str(uuid.uuid4())
    message, decoded = kombu_decode(kombu_channel, sqs_message_body(render_post(body, job_id)))
    args, kwargs, embed = decoded
    assert args == []
    assert kwargs == value
    assert json.dumps(kwargs, sort_keys=True) == json.dumps(value, sort_keys=True)
    assert embed == EMBED
    headers = message.headers
    assert headers["task"] == "tasks.debug.add"
    assert headers["id"] == headers["root_id"] == job_id
    assert message.properties["correlation_id"] == job_id
    assert message.properties["delivery_info"]["routing_key"] == "jobs-q"
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"


@pytest.mark.parametrize("body", RAW_BODIES)
def test_body_is_copied_byte_for_byte(body):
    """kwargs is the request's own JSON text: numbers like 1.0 or 1E3 keep their spelling."""
    envelope = json.loads(base64.b64decode(sqs_message_body(render_post(body, str(uuid.uuid4())))))
    inner = base64.b64decode(envelope["body"]).decode("utf-8")
    assert inner == f"[[], {body}, {json.dumps(EMBED)}]"


def test_kwargsrepr_is_the_body_when_short_and_bounded_when_long():
    short = json.dumps({"s": 'it\'s "quoted" é 😀 </x>'}, ensure_ascii=False)
    envelope = json.loads(base64.b64decode(sqs_message_body(render_post(short, "id"))))
    assert envelope["headers"]["kwargsrepr"] == short
    assert envelope["headers"]["argsrepr"] == "()"
    long = json.dumps({"s": "y" * 2000})
    envelope = json.loads(base64.b64decode(sqs_message_body(render_post(long, "id"))))
    assert envelope["headers"]["kwargsrepr"] == "{...}"


def test_output_is_exactly_one_form_line():
    rendered = render_post('{"x": 1, "y": 2}', str(uuid.uuid4()))
    assert rendered.startswith("Action=SendMessage&MessageBody=")
    assert "\n" not in rendered and " " not in rendered


@pytest.fixture(scope="module")
def delay_message(tmp_path_factory):
    """A message exactly as `tasks.debug.add.delay(x=1, y=2)` puts it on SQS (moto in process)."""
    import os

    from moto import mock_aws

    saved = {k: os.environ.pop(k, None) for k in ("AWS_ENDPOINT_URL", "JOBS_QUEUE_URL")}
    try:
        with mock_aws():
            import boto3
            from celery import Celery

            sqs = boto3.client("sqs", region_name="us-east-1")
            url = sqs.create_queue(QueueName="capture")["QueueUrl"]
            app = Celery("capture", broker="sqs://")
            app.conf.update(
                broker_transport_options={
                    "region": "us-east-1",
                    "predefined_queues": {"capture": {"url": url}},
                },
                task_default_queue="capture",
                task_serializer="json",
            )

            @app.task(name="tasks.debug.add")
            def add(x, y):
                return x + y

            add.delay(x=1, y=2)
            return sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"]
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def _shape(value):
    """Keys and value types, recursively: what must not differ between the two messages."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def test_envelope_matches_a_real_delay_message(delay_message, kombu_channel):
    real = json.loads(base64.b64decode(delay_message))
    job_id = str(uuid.uuid4())
    ours = json.loads(base64.b64decode(sqs_message_body(render_post('{"x": 1, "y": 2}', job_id))))
    assert list(ours) == list(real)  # same keys, same order
    assert _shape(ours) == _shape(real)
    assert list(ours["headers"]) == list(real["headers"])
    assert list(ours["properties"]) == list(real["properties"])
    varying = {"id", "root_id", "origin", "kwargsrepr", "submitted_at"}
    for key, value in real["headers"].items():
        if key not in varying:
            assert ours["headers"][key] == value, key
    for key in ("delivery_mode", "priority", "body_encoding"):
        assert ours["properties"][key] == real["properties"][key]
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": "jobs-q"}
    assert real["properties"]["delivery_info"]["exchange"] == ""
    # The inner body is byte-identical for the same JSON spelling.
    assert base64.b64decode(ours["body"]) == base64.b64decode(real["body"])
    _, decoded_real = kombu_decode(kombu_channel, delay_message)
    _, decoded_ours = kombu_decode(
        kombu_channel, sqs_message_body(render_post('{"x": 1, "y": 2}', job_id))
    )
    assert decoded_ours == decoded_real


def test_escape_javascript_is_commons_lang():
    assert escape_javascript("a'b\"c\\d/e") == "a\\'b\\\"c\\\\d\\/e"
    assert escape_javascript("\n\t\r\b\f\x01\x7f") == "\\n\\t\\r\\b\\f\\u0001\x7f"
    assert escape_javascript("é😀") == "\\u00E9\\uD83D\\uDE00"


# --- GET /jobs/{job_id} -------------------------------------------------------------------
JOB_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def get_response_template(exposed: tuple[str, ...] = ()) -> str:
    """GET /jobs/{id}'s record template, with `task:field` words exposed (none by default)."""
    return fill_template("get_job.response", exposed=list(exposed))


def render_get_response(item: dict | None, job_id: str = JOB_ID, exposed: tuple[str, ...] = ()):
    body = json.dumps({"Item": item} if item is not None else {})
    return render(
        get_response_template(exposed),
        body=body,
        params=Params(path={"job_id": job_id}),
        context={"requestId": "r"},
    )


def test_get_request_template_reads_consistently():
    text = fill_template("get_job.request", table_name="jobs-t")
    ok = render(text, body="", params=Params(path={"job_id": JOB_ID}), context={}).text
    assert json.loads(ok) == {
        "TableName": "jobs-t",
        "Key": {"job_id": {"S": JOB_ID}},
        "ConsistentRead": True,
    }
    bad = render(text, body="", params=Params(path={"job_id": 'x"}, "evil": {"'}), context={}).text
    assert json.loads(bad)["Key"] == {"job_id": {"S": "malformed-job-id"}}


def test_no_item_is_pending():
    out = render_get_response(None)
    assert out.status_override is None
    assert json.loads(out.text) == {"job_id": JOB_ID, "status": "PENDING"}


def test_malformed_id_is_400():
    out = render_get_response(None, job_id="not-a-uuid")
    assert out.status_override == 400
    assert "UUID" in json.loads(out.text)["message"]


def test_success_item_maps_result_as_json():
    result = {"words": 3, "quote": 'it\'s "fine" é 😀', "list": [1, None, True]}
    item = {
        "job_id": {"S": JOB_ID},
        "status": {"S": "SUCCESS"},
        "task": {"S": "tasks.text.analyze"},
        "result": {"S": json.dumps(result)},
        "attempts": {"N": "1"},
        "retries": {"N": "0"},
        "worker": {"S": "w1@host"},
        "created_at": {"S": "2026-01-01T00:00:00.000Z"},
        "started_at": {"S": "2026-01-01T00:00:01.000Z"},
        "finished_at": {"S": "2026-01-01T00:00:02.000Z"},
        "updated_at": {"S": "2026-01-01T00:00:02.000Z"},
        "expires_at": {"N": "1790000000"},
        "kwargs": {"S": "{'text': 'it\\'s'}"},
    }
    job = json.loads(render_get_response(item).text)
    assert job["result"] == result
    assert job["status"] == "SUCCESS" and job["task"] == "tasks.text.analyze"
    assert job["attempts"] == 1 and job["retries"] == 0 and job["expires_at"] == 1790000000
    assert job["finished_at"] == "2026-01-01T00:00:02.000Z"
    assert "kwargs" not in job and "worker" not in job  # not exposed by default
    job = json.loads(render_get_response(item, exposed=("tasks.text.analyze:kwargs",)).text)
    assert job["kwargs"] == "{'text': 'it\\'s'}"


def test_progress_and_failure_items():
    progress = {"current": 3, "total": 10, "message": "step 3 of 10"}
    job = json.loads(
        render_get_response(
            {"status": {"S": "PROGRESS"}, "progress": {"S": json.dumps(progress)}}
        ).text
    )
    assert job == {"job_id": JOB_ID, "status": "PROGRESS", "progress": progress}
    failed = {
        "status": {"S": "FAILURE"},
        "error": {
            "M": {
                "type": {"S": "RuntimeError"},
                "message": {"S": "bad 'input'\n\"line 2\" ✗"},
                "module": {"S": "builtins"},
            }
        },
        "traceback": {"S": 'Traceback...\n  File "x"\n'},
    }
    job = json.loads(render_get_response(failed).text)
    assert job["error"] == {
        "type": "RuntimeError",
        "message": "bad 'input'\n\"line 2\" ✗",
        "module": "builtins",
    }
    assert "traceback" not in job  # not exposed, and the item names no task
    failed["task"] = {"S": "tasks.debug.fail"}
    job = json.loads(render_get_response(failed, exposed=("tasks.debug.fail:traceback",)).text)
    assert job["traceback"] == 'Traceback...\n  File "x"\n'


# --- the OpenAPI document -------------------------------------------------------------------
def test_openapi_document():
    from tasks.jobkit.registry import all_jobs, public_jobs

    doc = build_openapi(TARGETS, all_jobs(), api_key_required=True)
    assert doc["openapi"].startswith("3.0")
    for name, spec in public_jobs().items():
        post = doc["paths"][f"/tasks/{name}"]["post"]
        integration = post["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws" and integration["httpMethod"] == "POST"
        assert integration["uri"] == "arn:aws:apigateway:eu-west-1:sqs:path/123456789012/jobs-q"
        assert integration["credentials"] == TARGETS.role_arn
        assert integration["passthroughBehavior"] == "never"
        template = integration["requestTemplates"]["application/json"]
        assert f'"task": "{name}"' in template and '"routing_key": "jobs-q"' in template
        assert not re.search(r"@[A-Z_]+@", template)
        assert post["security"] == [{"api_key": []}]
        assert (
            post["x-amazon-apigateway-request-validator"]
            in doc["x-amazon-apigateway-request-validators"]
        )
        assert doc["components"]["schemas"][model_name(name)] == spec.schema
        assert "options" in doc["paths"][f"/tasks/{name}"]
    private = set(all_jobs()) - set(public_jobs())
    assert private and not any(f"/tasks/{name}" in doc["paths"] for name in private)
    get = doc["paths"]["/jobs/{job_id}"]["get"]["x-amazon-apigateway-integration"]
    assert get["uri"] == "arn:aws:apigateway:eu-west-1:dynamodb:action/GetItem"
    assert '"TableName": "jobs-t"' in get["requestTemplates"]["application/json"]
    assert doc["components"]["securitySchemes"]["api_key"]["name"] == "x-api-key"
    assert "security" not in doc["paths"]["/jobs/{job_id}"]["options"]
    open_doc = build_openapi(TARGETS, all_jobs())
    assert "securitySchemes" not in open_doc["components"]
    assert "security" not in open_doc["paths"]["/jobs/{job_id}"]["get"]


def test_openapi_document_is_valid_openapi_3():
    validator = pytest.importorskip("openapi_spec_validator")
    for keyed in (False, True):
        validator.validate(build_openapi(TARGETS, all_jobs(), api_key_required=keyed))


def test_template_files_are_what_the_document_carries():
    from tasks.http_contract.mapping_templates import exposed_words
    from tasks.jobkit.registry import all_jobs

    doc = build_openapi(TARGETS, all_jobs())
    get = doc["paths"]["/jobs/{job_id}"]["get"]["x-amazon-apigateway-integration"]
    filled = (
        template_path("get_job.response")
        .read_text()
        .replace("@EXPOSED@", " ".join(exposed_words(all_jobs())))
    )
    assert get["responses"]["default"]["responseTemplates"]["application/json"] == filled
    with pytest.raises(FileNotFoundError):
        template_path("../app.py")


# --- parity with Apache Velocity 1.7, API Gateway's engine ---------------------------------
VELOCITY_JARS = [
    Path("/usr/share/java/velocity.jar"),
    Path("/usr/share/java/commons-lang.jar"),
    Path("/usr/share/java/commons-collections3.jar"),
]
HARNESS = Path(__file__).resolve().parent / "velocity" / "RenderTemplate.java"


@pytest.fixture(scope="module")
def velocity(tmp_path_factory):
    if not (shutil.which("javac") and all(p.exists() for p in VELOCITY_JARS)):
        pytest.skip(
            "Apache Velocity 1.7 not installed (Debian: apt-get install velocity "
            "libcommons-lang-java default-jdk-headless)"
        )
    out = tmp_path_factory.mktemp("velocity")
    classpath = ":".join(str(p) for p in VELOCITY_JARS)
    subprocess.run(["javac", "-cp", classpath, "-d", str(out), str(HARNESS)], check=True)

    def run(
        template: str,
        body: str,
        request_id: str,
        path: str = "/",
        resource: str = "/",
        job_id: str | None = None,
        with_status: bool = False,
        times: tuple[int, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        (out / "t.vtl").write_text(template, encoding="utf-8")
        (out / "body").write_text(body, encoding="utf-8")
        extra = [job_id or "", str(times[0]), times[1]] if times else ([job_id] if job_id else [])
        done = subprocess.run(
            [
                "java",
                "-cp",
                f"{out}:{classpath}",
                "RenderTemplate",
                str(out / "t.vtl"),
                str(out / "body"),
                request_id,
                path,
                resource,
                *extra,
            ],
            capture_output=True,
            check=True,
            timeout=60,
            env={**os.environ, "VTL_HEADERS": json.dumps(headers or {})},
        )
        text = done.stdout.decode("utf-8")
        if not with_status:
            return text
        return text, parse_overrides(text, done.stderr.decode()).status

    return run


def test_velocity_17_renders_the_same_message(velocity):
    """API Gateway's engine and the shim's produce the same bytes (one JVM start per body)."""
    samples = [json.dumps(v, ensure_ascii=False) for v in BODIES if len(json.dumps(v)) < 5000]
    samples += [*RAW_BODIES, '{"t": "' + "😀" * 508 + '"}', '{"t": "' + "a" * 1015 + '"}']
    job_id = str(uuid.uuid4())
    for body in samples:
        assert velocity(
            POST_TEMPLATE, body, job_id, "/", "/", times=(EPOCH_MS, "-")
        ) == render_post(body, job_id), body
    response = load_template("send_task.response")
    java = velocity(response, "", job_id, "/prod/tasks/tasks.debug.add", "/tasks/tasks.debug.add")
    ours = render(
        response,
        body="",
        params=Params(),
        context={
            "requestId": job_id,
            "path": "/prod/tasks/tasks.debug.add",
            "resourcePath": "/tasks/tasks.debug.add",
        },
    ).text
    assert java == ours
    assert json.loads(ours)["status_url"] == f"/prod/jobs/{job_id}"


def test_velocity_17_renders_the_same_job_json(velocity):
    items = [
        None,
        {
            "status": {"S": "STARTED"},
            "task": {"S": "tasks.debug.sleep"},
            "started_at": {"S": "2026-01-01T00:00:01.000Z"},
            "worker": {"S": "w@h"},
        },
        {
            "status": {"S": "PROGRESS"},
            "progress": {"S": json.dumps({"current": 3, "total": 10, "message": "é 😀 'q'"})},
        },
        {
            "status": {"S": "SUCCESS"},
            "result": {"S": json.dumps({"a": [1, None], "s": "x"})},
            "attempts": {"N": "1"},
            "retries": {"N": "0"},
            "expires_at": {"N": "1790000000"},
        },
        {
            "status": {"S": "FAILURE"},
            "error": {
                "M": {
                    "type": {"S": "RuntimeError"},
                    "message": {"S": "bad 'input'\n\"two\" ✗ 😀 </x>"},
                    "module": {"S": "builtins"},
                }
            },
            "traceback": {"S": 'Traceback\n  File "x"\n'},
        },
        {
            "status": {"S": "FAILURE"},
            "task": {"S": "tasks.debug.fail"},
            "traceback": {"S": 'Traceback\n  File "x"\n'},
            "worker": {"S": "w@h"},
            "args": {"S": "()"},
            "kwargs": {"S": "{'message': 'x'}"},
        },
    ]
    response = get_response_template(("tasks.debug.fail:traceback", "tasks.debug.sleep:worker"))
    request = fill_template("get_job.request", table_name="jobs-t")
    for job_id in (JOB_ID, "not-a-uuid"):
        java = velocity(request, "", "r", job_id=job_id)
        assert (
            java
            == render(request, body="", params=Params(path={"job_id": job_id}), context={}).text
        )
        for item in items:
            body = json.dumps({"Item": item} if item else {})
            text, status = velocity(response, body, "r", job_id=job_id, with_status=True)
            ours = render(
                response,
                body=body,
                params=Params(path={"job_id": job_id}),
                context={"requestId": "r"},
            )
            assert (text, status) == (ours.text, ours.status_override), item
            json.loads(text)


def test_catalog_template_is_the_public_jobs_verbatim():
    """GET /tasks is a mock integration whose template is the catalog: `$`/`#` must survive."""
    from tasks.jobkit.registry import JobSpec, public_jobs

    doc = build_openapi(TARGETS, all_jobs())
    template = doc["paths"]["/tasks"]["get"]["x-amazon-apigateway-integration"]["responses"][
        "default"
    ]["responseTemplates"]["application/json"]
    catalog = json.loads(render(template, body="", params=Params(), context={}).text)
    assert {t["name"]: t["schema"] for t in catalog["tasks"]} == {
        n: s.schema for n, s in public_jobs().items()
    }
    tricky = {
        "x.y": JobSpec(
            "x.y", {"description": "$x ${y} #set($a = 1) #if ## #* \\$"}, True, "cost: $5 #1"
        )
    }
    text = catalog_json(tricky)
    assert "$" not in text and "#" not in text
    assert json.loads(render(text, body="", params=Params(), context={}).text) == json.loads(text)
    assert json.loads(text)["tasks"][0]["schema"] == tricky["x.y"].schema


def test_velocity_17_renders_the_mock_templates_the_same(velocity):
    doc = build_openapi(TARGETS, all_jobs())
    for path, method in (("/tasks", "get"), ("/tasks/{name}", "post")):
        template = doc["paths"][path][method]["x-amazon-apigateway-integration"]["responses"][
            "default"
        ]["responseTemplates"]["application/json"]
        java = velocity(template, "", "r")
        assert java == render(template, body="", params=Params(), context={}).text
        json.loads(java)


def test_velocity_17_maps_sqs_errors_the_same(velocity):
    template = fill_template("send_task.error", max_body_bytes="1000")
    too_long = (
        "<ErrorResponse><Error><Code>InvalidParameterValue</Code><Message>One or more "
        "parameters are invalid. Reason: Message must be shorter than 1024 bytes."
        "</Message></Error></ErrorResponse>"
    )
    missing = "<ErrorResponse><Error><Code>NonExistentQueue</Code></Error></ErrorResponse>"
    for body, status in ((too_long, 413), (missing, None)):
        ours = render(template, body=body, params=Params(), context={})
        assert velocity(template, body, "r", with_status=True) == (ours.text, status)
        assert ours.status_override == status
        json.loads(ours.text)


def test_util_input_and_strings_behave_as_on_api_gateway():
    template = (
        "$util.urlEncode('a b*~é+/')|$util.urlDecode('a+b%2B%C3%A9')|"
        "$util.base64Decode($util.base64Encode('é😀'))|"
        '#set($m = $util.parseJson(\'{"a": {"b": [1, "x"]}}\'))$m.a.b[1]|'
        "$input.json('$.k')|$input.path('$.k.n')|$input.params('id')|$input.params('X-Trace')|"
        "$input.params().querystring.q|$input.body.length()|$input.body.substring(0, 2)|"
        "$context.requestId"
    )
    body = '{"k": {"n": 5, "s": "😀"}}'
    out = render(
        template,
        body=body,
        params=Params(path={"id": "p1"}, querystring={"q": "v"}, header={"x-trace": "t1"}),
        context={"requestId": "rid"},
    ).text
    assert out.split("|") == [
        "a+b*%7E%C3%A9%2B%2F",
        "a b+é",
        "é😀",
        "x",
        '{"n":5,"s":"😀"}',
        "5",
        "p1",
        "t1",
        "v",
        str(len(body.encode("utf-16-le")) // 2),
        '{"',
        "rid",
    ]


# --- DELETE /jobs/{job_id} ----------------------------------------------------------------
REVOKE_TIME = (1796115629123, "01/Dec/2026:09:00:29 +0000")  # epoch ms, CLF: the same instant


def render_revoke_request(job_id: str = JOB_ID) -> str:
    text = fill_template(
        "revoke_job.request", table_name="jobs-t", result_expires="604800", shard_by_digit="0" * 16
    )
    return render(
        text,
        body="",
        params=Params(path={"job_id": job_id}),
        context={"requestTimeEpoch": REVOKE_TIME[0], "requestTime": REVOKE_TIME[1]},
    ).text


def test_revoke_request_is_the_state_machines_revoke():
    """The UpdateItem DELETE sends is JobRecords.revoke_request's, value for value."""
    from datetime import UTC, datetime

    from tasks.results.records import JobRecords

    sent = json.loads(render_revoke_request())
    when = datetime.fromtimestamp(REVOKE_TIME[0] / 1000, UTC)
    expected = JobRecords(lambda: None, "jobs-t", 604800).revoke_request(JOB_ID, now=when)
    assert sent.pop("ReturnValues") == "ALL_NEW"
    assert sent.pop("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
    assert sent == expected
    assert expected["ExpressionAttributeValues"][":now"] == {"S": "2026-12-01T09:00:29.123Z"}
    # A malformed id writes nothing: a key without the key attribute is refused as invalid.
    assert json.loads(render_revoke_request('x"}, {'))["Key"] == {"malformed_job_id": {"S": "-"}}


def test_revoke_response_shows_the_record_as_get_does():
    """The DELETE and GET templates share the record's lines (one rule for exposure)."""

    def record_lines(name: str) -> list[str]:
        lines = load_template(name).splitlines()
        start = next(
            i
            for i, line in enumerate(lines)
            if line.startswith('{"job_id": "$id", "status": "$util')
        )
        return lines[start : lines.index("}", start) + 1]

    assert record_lines("revoke_job.response") == record_lines("get_job.response")


CCF = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
REVOKE_BODIES = [
    (
        json.dumps(
            {
                "Attributes": {
                    "status": {"S": "REVOKED"},
                    "task": {"S": "tasks.debug.fail"},
                    "revoked_at": {"S": "2026-12-01T09:07:09.123Z"},
                    "traceback": {"S": "Traceback 'é' \"x\"\n"},
                }
            }
        ),
        None,
    ),
    (
        json.dumps(
            {
                "__type": CCF,
                "message": "The conditional request failed",
                "Item": {
                    "status": {"S": "SUCCESS"},
                    "result": {"S": json.dumps({"s": "é 😀 'q' \"d\""})},
                },
            }
        ),
        409,
    ),
    (
        json.dumps(
            {
                "__type": CCF,
                "message": "The conditional request failed",
                "Item": {
                    "status": {"S": "FAILURE"},
                    "error": {"M": {"type": {"S": "RuntimeError"}, "message": {"S": "bad 'x'\n"}}},
                },
            }
        ),
        409,
    ),
    (json.dumps({"__type": CCF, "Item": {"status": {"S": "REVOKED"}}}), 200),
    (json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"}), 429),
    (
        json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                "message": "Requested resource not found",
            }
        ),
        None,
    ),
    (
        json.dumps(
            {
                "__type": "com.amazon.coral.validate#ValidationException",
                "message": "The provided key element does not match the schema",
            }
        ),
        None,
    ),
]


@pytest.mark.parametrize(("body", "status"), REVOKE_BODIES)
def test_revoke_response_statuses(body, status):
    template = fill_template("revoke_job.response", exposed=["tasks.debug.fail:traceback"])
    out = render(template, body=body, params=Params(path={"job_id": JOB_ID}), context={})
    assert out.status_override == status
    json.loads(out.text)
    malformed = render(template, body=body, params=Params(path={"job_id": "x"}), context={})
    assert malformed.status_override == 400


def test_velocity_17_renders_the_same_revoke(velocity):
    request = fill_template(
        "revoke_job.request", table_name="jobs-t", result_expires="604800", shard_by_digit="0" * 16
    )
    for job_id in (JOB_ID, "not-a-uuid"):
        java = velocity(request, "", "r", job_id=job_id, times=REVOKE_TIME)
        assert java == render_revoke_request(job_id)
    response = fill_template("revoke_job.response", exposed=["tasks.debug.fail:traceback"])
    for body, _ in REVOKE_BODIES:
        for job_id in (JOB_ID, "not-a-uuid"):
            text, status = velocity(response, body, "r", job_id=job_id, with_status=True)
            ours = render(response, body=body, params=Params(path={"job_id": job_id}), context={})
            assert (text, status) == (ours.text, ours.status_override), body


# --- Idempotency-Key, X-Callback-Url, submitted_at (POST headers) ----------------------------
KEY = "3FA85F64-5717-4562-B3FC-2C963F66AFA6"
HEADER_CASES = [
    {},
    {"Idempotency-Key": KEY},
    {"idempotency-key": KEY.lower(), "X-Callback-Url": "https://hooks.example/cb?a=1&b='x'#f"},
    {"X-Callback-Url": "http://127.0.0.1:8080/done"},
    {"X-Callback-Url": "http://[::1]/done"},
    {"Idempotency-Key": "not-a-uuid"},
    {"Idempotency-Key": KEY + "0"},
    {"Idempotency-Key": " " + KEY},
    {"X-Callback-Url": "http://example.com/"},
    {"X-Callback-Url": 'https://a"b'},
    {"X-Callback-Url": "https://a\\b"},
    {"X-Callback-Url": "https://é.example/"},
    {"X-Callback-Url": "https://x.example/" + "a" * (2048 - 18)},
    {"X-Callback-Url": "https://x.example/" + "a" * (2049 - 18)},
    {"X-Callback-Url": "ftp://x.example/"},
]


def post_answer(headers: dict[str, str], job_id: str = JOB_ID):
    """What the three POST templates make of these headers: (request, 202 answer, 4xx answer)."""
    context = {
        "requestId": job_id,
        "path": "/tasks/tasks.debug.add",
        "resourcePath": "/tasks/tasks.debug.add",
        "requestTimeEpoch": EPOCH_MS,
    }
    request = render_post('{"x": 1, "y": 2}', job_id, headers=headers)
    accepted = render(
        load_template("send_task.response"), body="", params=Params(header=headers), context=context
    )
    refused = render(
        fill_template("send_task.error", max_body_bytes="1000"),
        body="",
        params=Params(header=headers),
        context=context,
    )
    return request, accepted, refused


def test_idempotency_key_is_the_job_id(kombu_channel):
    request, accepted, _ = post_answer({"Idempotency-Key": KEY}, job_id=str(uuid.uuid4()))
    message, (_, kwargs, _embed) = kombu_decode(kombu_channel, sqs_message_body(request))
    assert message.headers["id"] == message.headers["root_id"] == KEY.lower()
    assert message.properties["correlation_id"] == KEY.lower()
    assert kwargs == {"x": 1, "y": 2}
    assert accepted.status_override is None
    assert json.loads(accepted.text)["job_id"] == KEY.lower()
    assert json.loads(accepted.text)["status_url"] == f"/jobs/{KEY.lower()}"


def test_submitted_at_and_callback_url_headers(kombu_channel):
    url = "https://hooks.example/cb?a=1&b='x'#f"
    message, _ = kombu_decode(
        kombu_channel,
        sqs_message_body(render_post('{"x": 1}', JOB_ID, headers={"X-Callback-Url": url})),
    )
    assert message.headers["submitted_at"] == EPOCH_MS
    assert message.headers["callback_url"] == url
    plain, _ = kombu_decode(kombu_channel, sqs_message_body(render_post('{"x": 1}', JOB_ID)))
    assert "callback_url" not in plain.headers  # absent header: no key at all
    from tasks.worker.gate import check  # the worker's message gate

    for decoded in (message, plain):
        assert check(decoded, {"tasks.debug.add"}) is None


@pytest.mark.parametrize("headers", HEADER_CASES, ids=lambda h: json.dumps(h)[:60])
def test_malformed_headers_are_400_and_never_a_message(headers):
    request, accepted, refused = post_answer(headers)
    fields = urllib.parse.parse_qs(request)
    key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), None)
    url = headers.get("X-Callback-Url")
    key_ok = (
        key is None
        or re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", key) is not None
    )
    url_ok = url is None or (
        len(url) <= 2048
        and re.fullmatch(
            r"(https://[!#-\[\]-~]+)|(http://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?"
            r"([/?][!#-\[\]-~]*)?)",
            url,
        )
        is not None
    )
    if key_ok and url_ok:
        assert set(fields) == {"Action", "MessageBody"}
        assert accepted.status_override is None
        assert json.loads(accepted.text)["job_id"] == (key or JOB_ID).lower()
        return
    # A request SQS refuses (an invalid attribute type): never a message; both answers 400.
    assert fields["MessageBody"] == ["refused"]
    assert fields["MessageAttribute.1.Value.DataType"] == ["Refused"]
    for answer in (accepted, refused):
        assert answer.status_override == 400
        message = json.loads(answer.text)["message"]
        assert message.startswith(
            "Idempotency-Key must be a UUID such as"
            if not key_ok
            else "X-Callback-Url must be an https URL"
        )


def test_velocity_17_renders_the_post_headers_the_same(velocity):
    templates = {
        "request": POST_TEMPLATE,
        "accepted": load_template("send_task.response"),
        "refused": fill_template("send_task.error", max_body_bytes="1000"),
    }
    for headers in HEADER_CASES:
        ours = dict(zip(templates, post_answer(headers), strict=True))
        for name, template in templates.items():
            body = '{"x": 1, "y": 2}' if name == "request" else ""
            java = velocity(
                template,
                body,
                JOB_ID,
                "/tasks/tasks.debug.add",
                "/tasks/tasks.debug.add",
                with_status=True,
                times=(EPOCH_MS, "-"),
                headers=headers,
            )
            mine = ours[name]
            if name == "request":
                assert java[0] == mine, (name, headers)
            else:
                assert java == (mine.text, mine.status_override), (name, headers)
