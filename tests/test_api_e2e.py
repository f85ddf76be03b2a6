"""End to end over HTTP: gunicorn serving the shim, moto's server, a real worker.

Every public task is submitted with POST /tasks/{name} and polled with GET /jobs/{id}
until it finishes, exactly as a client of the deployed API would.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import wait_until
from tests.http_shim import TERMINAL, Shim, http, running_shim

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "e2e") as server:
        yield server


TEXT = (
    "Queues decouple requests from work. Workers take jobs from the queue! "
    "Each job writes its state to a table. Clients poll the table for results."
)
CASES = {
    "tasks.debug.add": ({"x": 2, "y": 3.5}, lambda r: r == 5.5),
    "tasks.debug.sleep": ({"seconds": 0.2, "steps": 2}, lambda r: r == {"slept": 0.2, "steps": 2}),
    "tasks.text.analyze": (
        {"text": TEXT, "top_k": 3},
        lambda r: r["sentences"] == 4 and len(r["keywords"]) == 3,
    ),
    "tasks.documents.summarize": (
        {"document": "# One\nFirst part. It has two sentences.\n\n# Two\nSecond part here."},
        lambda r: r["section_count"] == 2 and r["sections"][0]["title"] == "One",
    ),
    "tasks.enrich.records": (
        {"records": [{"name": "ada lovelace", "email": "ADA@Example.com", "country": "uk"}]},
        lambda r: json.dumps(r).lower().count("ada") >= 1,
    ),
}


def test_every_public_task_runs_over_http(shim, module_worker):
    catalog = http("GET", f"{shim.url}/tasks").body
    public = {t["name"] for t in catalog["tasks"]}
    assert set(CASES) | {"tasks.debug.fail"} == public
    submitted = {name: shim.submit(name, kwargs) for name, (kwargs, _) in CASES.items()}
    for name, job_id in submitted.items():
        job = shim.wait(job_id)
        assert job["status"] == "SUCCESS", job
        assert CASES[name][1](job["result"]), (name, job["result"])
        assert job["task"] == name and job["job_id"] == job_id
        assert job["created_at"] <= job["started_at"] <= job["finished_at"]
        # No public job opts in to show its arguments or worker over HTTP.
        assert not {"args", "kwargs", "worker", "traceback"} & set(job), job


def test_submission_answer_and_status_url(shim, module_worker):
    answer = http(
        "POST",
        f"{shim.url}/tasks/tasks.debug.add",
        {"x": 1, "y": 1},
        headers={"Origin": "http://example.test"},
    )
    assert answer.status == 202
    body = answer.body
    assert set(body) == {"job_id", "status", "status_url"} and body["status"] == "PENDING"
    uuid.UUID(body["job_id"])
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    done = wait_until(
        lambda: (lambda a: a if a.body["status"] == "SUCCESS" else None)(
            http("GET", shim.url + body["status_url"])
        ),
        60,
        message="status_url to say SUCCESS",
    )
    assert done.body["result"] == 2


def test_failure_shows_the_error_and_python_sees_everything(stack, shim, module_worker):
    """Over HTTP: the error's type, not its message (a job's own exception may quote its
    arguments), traceback, arguments or worker. From Python, AsyncResult keeps all of it."""
    from celery.result import AsyncResult

    job_id = shim.submit("tasks.debug.fail", {"message": "bad input: 'x' \"y\" é"})
    job = shim.wait(job_id)
    assert job["status"] == "FAILURE"
    assert job["error"]["type"] == "RuntimeError"
    assert "message" not in job["error"] and "bad input" not in json.dumps(job)
    assert "result" not in job
    assert not {"traceback", "args", "kwargs", "worker"} & set(job), job

    result = AsyncResult(job_id)
    assert result.state == "FAILURE"
    assert "raise RuntimeError(message)" in result.traceback
    assert result.worker == module_worker.name
    assert isinstance(result.result, RuntimeError)
    assert str(result.result) == "bad input: 'x' \"y\" é"
    item = stack.item(job_id)
    assert "bad input" in item["kwargs"]["S"] and item["args"]["S"] == "()"


def test_progress_is_visible_mid_run(shim, module_worker):
    job_id = shim.submit("tasks.debug.sleep", {"seconds": 3, "steps": 6})
    seen: list[dict] = []

    def progressing() -> dict | None:
        job = shim.job(job_id)
        if job["status"] == "PROGRESS":
            seen.append(job["progress"])
        return job if job["status"] in TERMINAL else None

    deadline = time.monotonic() + 60
    job = None
    while job is None and time.monotonic() < deadline:
        job = progressing()
        time.sleep(0.1)
    assert job and job["status"] == "SUCCESS"
    currents = [p["current"] for p in seen]
    assert any(0 < c < 6 for c in currents), seen
    assert currents == sorted(currents)
    assert all(p["total"] == 6 and p["message"].startswith("step ") for p in seen)


def test_unknown_but_wellformed_id_is_pending(shim):
    job_id = str(uuid.uuid4())
    assert shim.job(job_id) == {"job_id": job_id, "status": "PENDING"}


def test_cors_preflight_and_documents(shim):
    for path in ("/tasks/tasks.debug.add", f"/jobs/{uuid.uuid4()}"):
        answer = http(
            "OPTIONS",
            shim.url + path,
            headers={
                "Origin": "http://example.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
        assert answer.status == 200
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "x-api-key" in answer.headers["Access-Control-Allow-Headers"].lower()
    doc = http("GET", f"{shim.url}/openapi.json").body
    assert "/tasks/tasks.text.analyze" in doc["paths"]
    page = http("GET", f"{shim.url}/")
    assert page.status == 200 and "<title>sqs-jobs</title>" in page.body


def test_tricky_text_reaches_the_task_intact(shim, module_worker):
    text = (
        "Quotes ' \" and \\ backslashes. New\nlines\tand tabs! Unicode é ß 日本語 😀 👩‍👩‍👧. "
        "Velocity $x ${y} #set($a = 1) ## not a comment. URL & % + = ? and <b>html</b>."
    )
    job = shim.wait(shim.submit("tasks.text.analyze", {"text": text, "top_k": 100}))
    assert job["status"] == "SUCCESS", job
    assert job["result"]["characters"] == len(text)
    words = {k["word"] for k in job["result"]["keywords"]}
    assert {"日本語", "velocity", "backslashes"} <= words, words
