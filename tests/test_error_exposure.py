"""What a failed job's error shows over HTTP and in callbacks (issue 17, defect 6).

A job's arguments may be personal data: GET /jobs/{id} hides them unless the job exposes
them (@job(expose=...)), and an error message must not bring them back:

* a refusal by the job's schema or signature (InvalidJobInput) or by the message gate
  (PoisonMessage) says where and which rule failed, never the value; in the record too;
* an exception the job raises itself may quote anything: GET /jobs/{id}, DELETE's answer
  and the callback body show its type, and its message only when the job exposes "error";
* Python's AsyncResult keeps everything: `get()` re-raises the job's exception type with
  its whole message, and the traceback is there.

Inputs are generated (Hypothesis) with a recognisable secret inside arbitrary JSON. Jobs
run through Celery's own tracer, as a worker's pool process runs them, against moto in
process; what HTTP shows is the deployed template rendered by tasks/http_contract/vtl.py (the shim
renders the same file, and API Gateway runs it), and the callback body is what
tasks.callbacks.attempt signs and sends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import states
from celery.app.trace import trace_task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from tasks import app
from tasks.callbacks.attempt import record_body
from tasks.http_contract.mapping_templates import exposed_words, fill_template
from tasks.http_contract.record import record_template as callback_template
from tasks.http_contract.vtl import Params, render
from tasks.jobkit import registry
from tasks.jobkit.errors import InvalidJobInput
from tasks.ops.provision import ensure_table
from tasks.results.backend import DynamoDBJobBackend
from tasks.worker import gate

SECRET = "Zq7SECRETx9"  # what a person's data looks like to these tests
HIDDEN = "tests.error_exposure.hidden"
EXPOSED = "tests.error_exposure.exposed"
CCF = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
RECORD = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "email": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
        "age": {"type": "integer", "minimum": 0},
    },
    "required": ["name"],
    "additionalProperties": {"type": "string"},
}
SCHEMA = {
    "type": "object",
    "properties": {
        "records": {"type": "array", "items": RECORD, "minItems": 1},
        "note": {"enum": ["urgent", "later"]},
    },
    "required": ["records"],
    "additionalProperties": False,
}
CASES = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def enrich(self: Any, records: list, note: str = "later") -> None:
    """A job whose own error quotes its arguments, as real code often does."""
    raise ValueError(f"cannot enrich {records!r} ({note})")


@pytest.fixture(scope="module")
def jobs() -> Iterator[dict[str, Any]]:
    """Two test jobs with one schema: one exposes its errors, one does not (the default)."""
    made = {
        HIDDEN: registry.job(schema=SCHEMA, public=False, name=HIDDEN)(enrich),
        EXPOSED: registry.job(schema=SCHEMA, public=False, name=EXPOSED, expose=("error",))(enrich),
    }
    yield made
    for name in made:
        registry._SPECS.pop(name, None)
        app.tasks.pop(name, None)
    callback_template.cache_clear()  # it names the jobs that expose fields


@pytest.fixture
def backend(in_process_aws, jobs) -> Iterator[DynamoDBJobBackend]:
    backend = DynamoDBJobBackend(app)
    ensure_table(backend.client, backend.table)
    tasks = (*jobs.values(), app.tasks["tasks.enrich.records"])
    saved = [(task._backend, task.__trace__) for task in tasks]
    for task in tasks:
        task.backend, task.__trace__ = backend, None  # the tracer keeps the task's backend
    yield backend
    for task, (own, trace) in zip(tasks, saved, strict=True):
        task.backend, task.__trace__ = own, trace


def run(task: Any, kwargs: dict[str, Any]) -> str:
    """Run the job as a worker's pool process does (Celery's tracer: STARTED, the job, the
    failure written by the backend with the task's own request)."""
    job_id = str(uuid.uuid4())
    request = {
        "id": job_id,
        "task": task.name,
        "hostname": "w1@test",
        "argsrepr": "()",
        "kwargsrepr": repr(kwargs),
        "delivery_info": {"routing_key": "jobs"},
    }
    trace_task(task, job_id, (), kwargs, request=request, app=app, hostname="w1@test", eager=False)
    return job_id


def item_of(backend: DynamoDBJobBackend, job_id: str) -> dict:
    return backend.client.get_item(
        TableName=backend.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )["Item"]


def shown(backend: DynamoDBJobBackend, job_id: str) -> dict[str, str]:
    """What each outside reader gets: GET /jobs/{id}, DELETE's 409 (the record unchanged),
    and the callback body."""
    item = item_of(backend, job_id)
    exposed = exposed_words(registry.all_jobs())
    params, context = Params(path={"job_id": job_id}), {"requestId": "r", "path": f"/jobs/{job_id}"}
    get = render(
        fill_template("get_job.response", exposed=exposed),
        body=json.dumps({"Item": item}),
        params=params,
        context=context,
    )
    delete = render(
        fill_template("revoke_job.response", exposed=exposed),
        body=json.dumps({"__type": CCF, "Item": item}),
        params=params,
        context=context,
    )
    assert delete.status_override == 409
    return {"GET": get.text, "DELETE": delete.text, "callback": record_body(job_id, item).decode()}


# --- generated inputs: arbitrary JSON with the secret in values and in keys -----------------
def with_secret() -> st.SearchStrategy[str]:
    return st.builds(lambda a, b: a + SECRET + b, st.text(max_size=4), st.text(max_size=4))


TEXT = st.one_of(st.text(max_size=6), with_secret()).filter(lambda t: t != "self")
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
VALID_RECORD = st.fixed_dictionaries(
    {"name": with_secret()},
    optional={"email": st.just(f"{SECRET}@example.org"), "age": st.integers(0, 120)},
)
NEAR_RECORD = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {"name": st.one_of(TEXT, JSON)},
        optional={"email": st.one_of(TEXT, JSON), "age": st.one_of(st.integers(-3, 120), JSON)},
    ),
    st.dictionaries(TEXT, JSON, max_size=2),
)
VALID = st.fixed_dictionaries(
    {"records": st.lists(VALID_RECORD, min_size=1, max_size=3)},
    optional={"note": st.sampled_from(["urgent", "later"])},
)
ANY = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {"records": st.one_of(st.lists(NEAR_RECORD, max_size=3), JSON)},
        optional={"note": st.one_of(st.sampled_from(["urgent", "later"]), JSON)},
    ),
    st.dictionaries(TEXT, JSON, max_size=1),
)
KWARGS = st.one_of(VALID, ANY).filter(lambda kwargs: SECRET in json.dumps(kwargs))


def test_a_hidden_jobs_error_never_shows_its_arguments(backend, jobs):
    seen: set[str] = set()

    @CASES
    @given(kwargs=KWARGS)
    def check(kwargs: dict[str, Any]) -> None:
        job_id = run(jobs[HIDDEN], kwargs)
        item = item_of(backend, job_id)
        assert item["status"]["S"] == states.FAILURE
        assert SECRET in item["kwargs"]["S"]  # the record keeps them; HTTP must not show them
        for reader, text in shown(backend, job_id).items():
            assert SECRET not in text, (reader, text)
            error = json.loads(text)["error"]
            seen.add(error["type"])
            if error["type"] == "InvalidJobInput":  # the schema's words: shown, value-free
                assert error["message"].split(": ", 1)[0], error
            else:  # the job's own words: type only
                assert error == {"type": "ValueError", "module": "builtins"}, reader
        if item["error"]["M"]["type"]["S"] == "InvalidJobInput":
            assert SECRET not in json.dumps(item["error"])  # in the record too
        # Python sees everything: the job's exception, re-raised with its whole message.
        result = app.AsyncResult(job_id, backend=backend)
        with pytest.raises((InvalidJobInput, ValueError)) as raised:
            result.get(timeout=5, disable_sync_subtasks=False)
        assert type(raised.value).__name__ == item["error"]["M"]["type"]["S"]
        if type(raised.value) is ValueError:
            assert SECRET in str(raised.value) and SECRET in result.traceback

    check()
    assert seen == {"InvalidJobInput", "ValueError"}  # both paths were exercised


def test_a_job_that_exposes_its_errors_shows_them(backend, jobs):
    @CASES
    @given(kwargs=VALID)
    def check(kwargs: dict[str, Any]) -> None:
        job_id = run(jobs[EXPOSED], kwargs)
        texts = shown(backend, job_id)
        for reader, text in texts.items():
            error = json.loads(text)["error"]
            assert error["type"] == "ValueError", reader
            assert (
                error["message"] == f"cannot enrich {kwargs['records']!r} "
                f"({kwargs.get('note', 'later')})"
            ), reader
            assert SECRET in text
        assert json.loads(texts["GET"]) == json.loads(texts["callback"])

    check()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    job=st.sampled_from(sorted(registry.all_jobs())),
    kwargs=st.dictionaries(TEXT, JSON, max_size=3),
    known=st.data(),
)
def test_no_jobs_schema_refusal_quotes_a_value(job, kwargs, known):
    """Every registered job's schema (what the worker checks, and the shim's 400 says): its
    refusals name the path and the rule, whatever the input holds."""
    schema = registry.all_jobs()[job].schema
    for name in schema.get("properties", {}):  # the job's own parameters, holding anything
        if known.draw(st.booleans()):
            kwargs[name] = known.draw(JSON)
    for problem in registry.describe_errors(Draft4Validator(schema), kwargs):
        assert SECRET not in problem, (job, problem)
        assert problem.split(": ", 1)[1], problem


def test_a_schema_refusal_says_where_and_which_rule_not_the_value(backend):
    """The issue's example, with the production job tasks.enrich.records: jsonschema's own
    words quote the records; the job's record and GET /jobs/{id} say the rule."""
    records = {"name": "Jane Roe", "email": "jane@example.org"}
    validator = Draft4Validator(registry.all_jobs()["tasks.enrich.records"].schema)
    assert "Jane Roe" in next(validator.iter_errors({"records": records})).message  # control
    job_id = run(app.tasks["tasks.enrich.records"], {"records": records})
    item = item_of(backend, job_id)
    assert "Jane Roe" not in json.dumps(item["error"])
    for reader, text in shown(backend, job_id).items():
        assert json.loads(text)["error"] == {
            "type": "InvalidJobInput",
            "module": "tasks.jobkit.errors",
            "message": "records: is not of type 'array'",
        }, reader
    with pytest.raises(InvalidJobInput, match=r"^records: is not of type 'array'$"):
        app.AsyncResult(job_id, backend=backend).get(timeout=5, disable_sync_subtasks=False)


def vouching(self: Any, records: list, note: str = "later") -> None:
    if note == "urgent":
        raise InvalidJobInput("records: every record needs an e-mail address", public=True)
    raise InvalidJobInput(f"records: no e-mail address in {records!r}")


def test_a_job_vouches_for_one_message_with_public_invalid_input(backend):
    """InvalidJobInput raised by a job is its own words: hidden, unless it passes
    `public=True` (it holds no argument value), while Python has both."""
    task = registry.job(schema=SCHEMA, public=False, name="tests.error_exposure.vouching")(vouching)
    task.backend = backend
    try:
        records = [{"name": SECRET}]
        public = run(task, {"records": records, "note": "urgent"})
        private = run(task, {"records": records})
        assert (
            json.loads(shown(backend, public)["GET"])["error"]["message"]
            == "records: every record needs an e-mail address"
        )
        for text in shown(backend, private).values():
            assert json.loads(text)["error"] == {
                "type": "InvalidJobInput",
                "module": "tasks.jobkit.errors",
            }
        with pytest.raises(InvalidJobInput, match=SECRET):
            app.AsyncResult(private, backend=backend).get(timeout=5, disable_sync_subtasks=False)
    finally:
        registry._SPECS.pop(task.name, None)
        app.tasks.pop(task.name, None)


def test_a_long_private_message_still_reaches_python(backend):
    """The record cuts what it keeps (MAX_ERROR_CHARS): the private message is kept as
    arguments that still parse, so AsyncResult gets the start of it, not an empty one."""
    from tasks.results.job_item import MAX_ERROR_CHARS

    message = 'é"' * 3 * MAX_ERROR_CHARS
    backend.store_result(
        "long", ValueError(message), states.FAILURE, request=SimpleNamespace(task=HIDDEN)
    )
    error = item_of(backend, "long")["error"]["M"]
    assert error["message"]["S"] == "" and len(error["args"]["S"]) <= MAX_ERROR_CHARS
    got = app.AsyncResult("long", backend=backend).result
    assert type(got) is ValueError and message.startswith(str(got)) and len(str(got)) > 500


# --- the message gate --------------------------------------------------------------------
HEADER_NAMES = st.sampled_from(
    [
        "retries",
        "eta",
        "expires",
        "timelimit",
        "group",
        "root_id",
        "argsrepr",
        "stamps",
        "countdown",
        "callback_url",
    ]
)


def refusal(args: Any, kwargs: Any, embed: Any, headers: dict[str, Any]) -> str | None:
    message = SimpleNamespace(
        headers={"id": str(uuid.uuid4()), "task": "tasks.debug.add", "lang": "py", **headers},
        properties={},
        content_type="application/json",
        content_encoding="utf-8",
        body=json.dumps([args, kwargs, embed]),
    )
    verdict = gate.check(message, {"tasks.debug.add"})
    return None if verdict is None else verdict.reason


def test_the_gates_reasons_never_quote_a_value():
    """A refused message's reason is its record's error message (PoisonMessage), shown over
    HTTP: the body holds the job's arguments, and the headers are the caller's."""
    refused: list[str] = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(
        args=JSON, kwargs=JSON, embed=JSON, headers=st.dictionaries(HEADER_NAMES, JSON, max_size=2)
    )
    def check(args: Any, kwargs: Any, embed: Any, headers: dict[str, Any]) -> None:
        reason = refusal(args, kwargs, embed, headers)
        if reason is not None and SECRET in json.dumps([args, kwargs, embed, headers]):
            assert SECRET not in reason, reason
            refused.append(reason)

    check()
    assert len(refused) > 50  # most generated messages carry the secret and are refused
