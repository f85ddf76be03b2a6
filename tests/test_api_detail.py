"""What GET /jobs/{id} shows over HTTP, and to whom.

Over HTTP a record shows its status, result, progress, timestamps and its error's type and
message; `traceback`, `args`, `kwargs` and `worker` only for a job registered with
`@job(expose=...)` naming them (arguments may carry personal data, tracebacks show code paths).
Each field is checked in the deployed template (rendered by the shim's engine and by Apache
Velocity 1.7) and in the shim reading a real record from moto's DynamoDB. Python's AsyncResult
keeps everything (tests/test_api_e2e.py shows it for a job a worker ran).
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from tests import apigw
from tests.apigw import Case, Velocity

pytestmark = pytest.mark.integration

FIELDS = ("traceback", "args", "kwargs", "worker")
SHOWN = "tests.detail.shows_{field}"  # a job exposing only {field}
HIDDEN = "tests.detail.shows_nothing"
TWO = "tests.detail.shows_args_and_traceback"
JOB = "/jobs/{job_id}"


def record(job_id: str, task: str) -> dict:
    """A FAILURE record as the worker writes it (tasks/results/records.py)."""
    return {
        "job_id": {"S": job_id},
        "status": {"S": "FAILURE"},
        "task": {"S": task},
        "error": {
            "M": {
                "type": {"S": "ValueError"},
                "message": {"S": "bad 'input' é"},
                "module": {"S": "builtins"},
                "args": {"S": "[\"bad 'input' é\"]"},
            }
        },
        "traceback": {"S": 'Traceback (most recent call last):\n  File "/app/tasks/x.py"\n'},
        "args": {"S": "()"},
        "kwargs": {"S": "{'email': 'ada@example.com', 'name': 'Ada'}"},
        "worker": {"S": "celery@ip-10-0-1-23"},
        "attempts": {"N": "1"},
        "retries": {"N": "0"},
        "created_at": {"S": "2026-01-01T00:00:00.000Z"},
        "finished_at": {"S": "2026-01-01T00:00:01.000Z"},
    }


@pytest.fixture(scope="module")
def registry():
    """Test-only jobs, each exposing one field (and one exposing none), in the registry."""
    from tasks.jobkit import registry

    schema = {"type": "object"}
    added = {
        SHOWN.format(field=f): registry.JobSpec(
            SHOWN.format(field=f), schema, False, "", frozenset({f})
        )
        for f in FIELDS
    }
    added[HIDDEN] = registry.JobSpec(HIDDEN, schema, False, "")
    added[TWO] = registry.JobSpec(TWO, schema, False, "", frozenset({"args", "traceback"}))
    registry.all_jobs()  # load the production jobs first
    registry._SPECS.update(added)
    yield registry
    for name in added:
        registry._SPECS.pop(name, None)


@pytest.fixture(scope="module")
def client(stack, registry):
    from api_shim.app import create_app
    from tasks.ops.settings import Settings

    return create_app(dataclasses.replace(Settings.from_env(), api_keys=())).test_client()


@pytest.fixture(scope="module")
def doc(client) -> dict:
    return client.application.extensions["gateway"].document


@pytest.fixture(scope="module")
def velocity(tmp_path_factory) -> Velocity | None:
    return Velocity(tmp_path_factory.mktemp("velocity")) if apigw.velocity_available() else None


def test_expose_accepts_only_the_detail_fields():
    from tasks.jobkit.registry import HTTP_DETAIL_FIELDS, JobSpec, job

    assert set(HTTP_DETAIL_FIELDS) == set(FIELDS)
    assert JobSpec("x", {}, True, "").expose == frozenset()
    with pytest.raises(ValueError, match="result"):
        job(schema={"type": "object"}, expose=("traceback", "result"))
    with pytest.raises(ValueError, match="password"):
        job(schema={"type": "object"}, expose="password")


def test_no_production_job_exposes_anything_by_default():
    from tasks.jobkit.registry import all_jobs

    # kwargs of tasks.enrich.records are people's records: nothing is shown unless opted in.
    assert all(not spec.expose for name, spec in all_jobs().items() if name.startswith("tasks."))


def test_the_deployed_template_lists_the_exposed_fields(doc):
    template = apigw.response_template(doc, JOB, "get", 200)
    words = template.split("#set($exposed = '", 1)[1].split("'", 1)[0].split()
    assert sorted(words) == sorted(
        [f"{SHOWN.format(field=f)}:{f}" for f in FIELDS] + [f"{TWO}:args", f"{TWO}:traceback"]
    )


def deployed(doc, velocity, items: list[dict]) -> list[dict]:
    """The deployed API's JSON for each GetItem answer, rendered by both engines."""
    cases = [
        Case(
            apigw.response_template(doc, JOB, "get", 200),
            body=json.dumps({"Item": item}),
            job_id=item["job_id"]["S"],
        )
        for item in items
    ]
    ours = [apigw.shim_engine(case) for case in cases]
    if velocity is not None:
        assert velocity.render_many(cases) == ours
    return [
        apigw.integration_answer(doc, JOB, "get", 200, case.body, rendered).json()
        for case, rendered in zip(cases, ours, strict=True)
    ]


@pytest.mark.parametrize("field", FIELDS)
def test_each_detail_field_is_hidden_unless_the_job_exposes_it(stack, client, doc, velocity, field):
    expected = {
        HIDDEN: set(),
        SHOWN.format(field=field): {field},
        TWO: {"args", "traceback"},
        "tasks.enrich.records": set(),
        "no.such.task": set(),
    }
    items = [record(str(uuid.uuid4()), task) for task in expected]
    for item, want in zip(items, deployed(doc, velocity, items), strict=True):
        task = item["task"]["S"]
        stack.dynamodb.put_item(TableName=stack.table, Item=item)
        over_http = client.get(f"/jobs/{item['job_id']['S']}")
        assert over_http.status_code == 200
        job = over_http.get_json()
        assert job == want, task
        assert {f for f in FIELDS if f in job} == expected[task], task
        for name in expected[task]:
            assert job[name] == item[name]["S"]
        # What every caller sees: the error's type and message, and the record's facts.
        assert job["error"] == {
            "type": "ValueError",
            "message": "bad 'input' é",
            "module": "builtins",
        }
        assert job["status"] == "FAILURE" and job["task"] == task
        assert job["attempts"] == 1 and job["finished_at"] == "2026-01-01T00:00:01.000Z"


@pytest.mark.parametrize(
    "task",
    [
        f"{TWO}:args {TWO}",  # " <task>:traceback " would be found in " ...:args ...:traceback "
        f"{HIDDEN} {SHOWN.format(field='traceback')}",
        f"{SHOWN.format(field='traceback')}:traceback",
        "",
    ],
)
def test_a_task_attribute_that_is_not_a_plain_name_exposes_nothing(
    stack, client, doc, velocity, task
):
    item = record(str(uuid.uuid4()), task)
    if not task:
        del item["task"]
    stack.dynamodb.put_item(TableName=stack.table, Item=item)
    job = client.get(f"/jobs/{item['job_id']['S']}").get_json()
    assert [job] == deployed(doc, velocity, [item])
    assert not {f for f in FIELDS if f in job}
