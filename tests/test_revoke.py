"""Cancellation on SQS: AsyncResult.revoke(), app.control.revoke() and DELETE /jobs/{job_id}.

Celery's revoke is a broadcast to the workers' memory, which SQS cannot carry. Here a revoke
is a transition of the job's record (tasks.results.records.JobRecords.revoke), and workers
learn of it from their own writes: the STARTED write before a job runs and each progress
write while it runs are refused by a REVOKED record (tasks.jobkit.task); a job asked to
terminate is killed by its worker within REVOKE_CHECK_SECONDS (tasks.worker.revocation).

What Celery documents and these tests hold to (docs.celeryq.dev, userguide/workers.html,
"Revoking tasks"): "Revoking a task tells the workers to ignore it: it will not be executed
when received"; "the terminate option is a last resort ... The process may have already
started processing another task" (here: the worker reads the record of the job it is
running, so it can only kill that job); a revoked task's state is REVOKED and
`AsyncResult.get()` raises TaskRevokedError. Revoking a finished task changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from celery import states
from celery.app.task import Context
from celery.exceptions import Ignore, TaskRevokedError

from tasks import app
from tasks.jobkit.errors import JobRevoked
from tasks.ops.settings import Settings
from tasks.results.revoked_mark import note_revoked, revoked_noted
from tasks.worker.revocation import REVOKE_CHECK_SECONDS
from tests.conftest import wait_until
from tests.records_fixture import item

REVOKE_JOBS = "tests.jobs,tests.revoke_jobs"


# --- the state machine's revoke transition (moto in process) -----------------------------


def count_calls(client) -> list[str]:
    """Every DynamoDB operation the client sends from now on (botocore's event hooks)."""
    calls: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb", lambda model, **kw: calls.append(model.name)
    )
    return calls


def test_a_job_with_no_record_yet_becomes_revoked(records):
    before = int(time.time())
    outcome = records.revoke("queued")
    assert (outcome.revoked, outcome.status, outcome.previous) == (True, "REVOKED", "PENDING")
    record = item(records, "queued")
    assert record["status"]["S"] == "REVOKED"
    assert record["revoked_at"]["S"] == record["finished_at"]["S"] == record["updated_at"]["S"]
    assert record["error"]["M"]["type"]["S"] == "TaskRevokedError"
    assert record["error"]["M"]["module"]["S"] == "celery.exceptions"
    assert before + 3600 <= int(record["expires_at"]["N"]) <= int(time.time()) + 3600
    assert "terminate" not in record


@pytest.mark.parametrize("state", [states.STARTED, "PROGRESS", states.RETRY])
def test_a_running_job_becomes_revoked_with_terminate_recorded_if_asked(records, state):
    assert records.transition("running", state, facts={"task": "tasks.debug.sleep"})
    outcome = records.revoke("running", terminate="SIGKILL")
    assert (outcome.revoked, outcome.previous, outcome.terminate) == (True, state, "SIGKILL")
    record = item(records, "running")
    assert record["status"]["S"] == "REVOKED" and record["terminate"]["S"] == "SIGKILL"
    assert record["task"]["S"] == "tasks.debug.sleep"  # the rest of the record is kept


@pytest.mark.parametrize("state", [states.SUCCESS, states.FAILURE, states.REVOKED])
def test_a_finished_job_stays_finished_and_the_revoke_says_so(records, state):
    if state == states.REVOKED:
        records.revoke("done")
    else:
        records.transition(
            "done", state, result_text="5", error={"type": "RuntimeError", "message": "boom"}
        )
    before = item(records, "done")
    calls = count_calls(records.client)
    outcome = records.revoke("done", terminate="SIGTERM")
    assert (outcome.revoked, outcome.status, outcome.previous) == (False, state, state)
    assert calls == ["UpdateItem"]  # the refusal brought the record back: no read
    assert "not revoked: already" in str(outcome)
    assert item(records, "done") == before


def test_a_refused_write_brings_the_revoked_record_back_at_no_extra_read(records):
    records.revoke("j")
    calls = count_calls(records.client)
    refusal: dict = {}
    assert records.transition("j", states.STARTED, refusal=refusal) is False
    assert refusal["status"]["S"] == "REVOKED"
    assert calls == ["UpdateItem"]
    written: dict = {}
    assert records.transition("k", states.STARTED, refusal=written) is True
    assert written == {}


# --- the backend and the task base (moto's server) --------------------------------------
def task_request(job_id: str) -> Context:
    return Context({"id": job_id, "task": "tasks.debug.sleep", "called_directly": False})


def test_a_refused_started_write_marks_the_request_and_the_job_is_dropped(stack):
    job_id = str(uuid.uuid4())
    app.control.revoke(job_id)
    request = task_request(job_id)
    app.backend.store_result(job_id, {"pid": 1}, states.STARTED, request=request)
    assert revoked_noted(request)
    task = app.tasks["tasks.debug.sleep"]
    task.request_stack.push(request)
    try:
        with pytest.raises(Ignore):  # Celery acknowledges the message and stores nothing
            task.before_start(job_id, (), {"seconds": 1})
    finally:
        task.request_stack.pop()
    assert stack.status(job_id) == "REVOKED"
    # Not revoked: not marked, and the job starts.
    other = task_request(str(uuid.uuid4()))
    app.backend.store_result(other.id, {"pid": 1}, states.STARTED, request=other)
    assert not revoked_noted(other) and stack.status(other.id) == "STARTED"


def test_a_refused_progress_write_raises_job_revoked_which_except_exception_misses(stack):
    job_id = str(uuid.uuid4())
    app.backend.store_result(job_id, {"pid": 1}, states.STARTED, request=task_request(job_id))
    task = app.tasks["tasks.debug.sleep"]
    task.request_stack.push(task_request(job_id))
    try:
        task.update_state(state="PROGRESS", meta={"current": 1, "total": 3})  # not revoked
        assert app.control.revoke(job_id).previous == "PROGRESS"
        caught = None
        try:
            task.update_state(state="PROGRESS", meta={"current": 2, "total": 3})
        except Exception as exc:  # what a careless job writes
            caught = exc
        except JobRevoked:
            caught = "JobRevoked"
        assert caught == "JobRevoked"
        assert task.is_aborted()
    finally:
        task.request_stack.pop()
    assert json.loads(stack.item(job_id)["progress"]["S"])["current"] == 1


def test_is_aborted_reads_the_record_once(stack):
    job_id = str(uuid.uuid4())
    task = app.tasks["tasks.debug.sleep"]
    request = task_request(job_id)
    task.request_stack.push(request)
    try:
        calls = count_calls(app.backend.client)
        assert task.is_aborted() is False
        app.control.revoke(job_id)
        assert task.is_aborted() is True
        assert task.is_aborted() is True  # known now: no more reads
        assert calls == ["GetItem", "UpdateItem", "GetItem"]
    finally:
        task.request_stack.pop()
    assert not task.is_aborted()  # outside a job: never revoked


def test_note_revoked_is_kept_on_the_request():
    request = Context({"id": "x"})
    assert not revoked_noted(request)
    note_revoked(request)
    assert revoked_noted(request)


def test_control_revokes_lists_and_refuses_broadcasts(stack):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    outcomes = app.control.revoke(ids, terminate=True, signal="KILL")
    assert [o.job_id for o in outcomes] == ids
    assert all(o.revoked and o.terminate == "SIGKILL" for o in outcomes)
    assert stack.item(ids[0])["terminate"]["S"] == "SIGKILL"
    for call in (
        app.control.ping,
        app.control.inspect().active,
        lambda: app.control.rate_limit("tasks.debug.add", "1/m"),
        lambda: app.control.revoke_by_stamped_headers({"k": "v"}),
    ):
        with pytest.raises(NotImplementedError, match="SQS cannot broadcast"):
            call()
    with pytest.raises(ValueError, match="not a signal"):
        app.control.revoke(ids[0], terminate=True, signal="SIGNOPE")


def test_the_send_only_client_revokes_the_same_way_without_the_worker(stack):
    """tasks.client (services without the job code) has the same control, and importing it
    loads nothing of the worker runtime."""
    import subprocess
    import sys

    from tasks.client import app as client_app
    from tasks.results.control import Control

    assert isinstance(client_app.control, Control)
    job_id = str(uuid.uuid4())
    assert client_app.control.revoke(job_id).revoked
    assert client_app.AsyncResult(job_id).state == "REVOKED"
    code = (
        "import sys, tasks.client; tasks.client.app.control; "
        "bad = [m for m in sys.modules if m.startswith(('tasks.worker', 'tasks.debug'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=stack.env, timeout=60)


class FakeRequest:
    def __init__(self, job_id: str) -> None:
        self.id, self.name, self.worker_pid, self.acknowledged = job_id, "t", 123, False
        self._context = Context({"id": job_id})
        self.terminated_with: str | None = None

    def terminate(self, pool, signal=None) -> None:
        self.terminated_with = signal


def test_the_terminator_reads_nothing_while_no_job_runs_and_kills_only_terminate(
    monkeypatch, stack
):
    """One BatchGetItem per check while jobs run, none while idle; only a job revoked with
    terminate is killed, with the signal its record names."""
    from types import SimpleNamespace

    from tasks.worker import revocation

    running: list = []
    monkeypatch.setattr(revocation, "running_requests", lambda: list(running))
    consumer = SimpleNamespace(app=app, pool=object(), call_soon=lambda fn, *a: fn(*a))
    terminator = revocation.RevokedJobTerminator()
    terminator.consumer = consumer
    terminator.check()
    assert terminator.reads == 0 and terminator._executor is None  # idle: no read, no thread

    plain, revoked, killed = (FakeRequest(str(uuid.uuid4())) for _ in range(3))
    running.extend([plain, revoked, killed])
    app.control.revoke(revoked.id)
    app.control.revoke(killed.id, terminate=True, signal="KILL")
    # Celery's app.backend is per thread: count on the client the terminator's thread uses.
    calls = count_calls(terminator.executor().submit(lambda: app.backend.client).result())
    terminator.check()
    wait_until(lambda: calls and not terminator.reading, 10, message="the read")
    assert terminator.reads == 1 and calls == ["BatchGetItem"]
    assert (plain.terminated_with, revoked.terminated_with) == (None, None)
    assert killed.terminated_with == "SIGKILL" and revoked_noted(killed._context)
    terminator.executor().shutdown(wait=True)


# --- against real worker processes -------------------------------------------------------
@pytest.fixture(scope="module")
def worker(stack):
    from tests.conftest import launch_worker

    w = launch_worker(stack, "revoke", 2, env={"JOBS_EXTRA_MODULES": REVOKE_JOBS})
    yield w
    w.close()


def drained(stack) -> bool:
    from tests.faults import drained as no_message  # delayed ones (a countdown) included

    return no_message(stack)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_countdown_job_revoked_before_it_runs_never_runs(stack, worker, tmp_path):
    from tests.jobs import append_line

    side_effect = tmp_path / "effect.txt"
    result = append_line.apply_async(kwargs={"path": str(side_effect), "line": "ran"}, countdown=4)
    result.revoke()
    assert result.state == "REVOKED"
    # The worker holds it until its ETA, then its STARTED write is refused: dropped, acked.
    wait_until(lambda: drained(stack), 30, message="the revoked message acknowledged")
    assert lines(side_effect) == []
    record = stack.item(result.id)
    assert record["status"]["S"] == "REVOKED" and "started_at" not in record
    assert f"[{result.id}] was revoked before it started" in worker.log()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=5)


def test_a_running_job_stops_at_its_next_progress_step(stack, worker):
    from tasks.debug import sleep

    result = sleep.apply_async(kwargs={"seconds": 8, "steps": 8})  # a step a second
    wait_until(
        lambda: (result.info or {}).get("current", 0) >= 1 if result.state == "PROGRESS" else False,
        30,
        message="the job reporting progress",
    )
    revoked_at = time.monotonic()
    outcome = app.control.revoke(result.id)
    assert outcome.revoked and outcome.previous == "PROGRESS"
    wait_until(lambda: drained(stack), 15, message="the revoked job acknowledged")
    stopped_after = time.monotonic() - revoked_at
    record = stack.item(result.id)
    assert record["status"]["S"] == "REVOKED" and "result" not in record
    progress = json.loads(record["progress"]["S"])
    assert progress["current"] < progress["total"]  # it did not finish its steps
    assert stopped_after < 5, stopped_after  # at its next step (1 s), not after 8 s
    assert f"[{result.id}] was revoked while it ran" in worker.log()


def test_a_job_that_swallows_exceptions_still_stops(stack, worker, tmp_path):
    trace = tmp_path / "trace.txt"
    result = app.send_task(
        "tests.revoke_jobs.swallows_exceptions", kwargs={"path": str(trace), "seconds": 30}
    )
    wait_until(lambda: len(lines(trace)) >= 3, 30, message="the job running")
    result.revoke()
    wait_until(lambda: drained(stack), 15, message="the revoked job acknowledged")
    # Acknowledged after the job ended: its trace is complete, and it did not finish.
    assert lines(trace)[-1].startswith("step ") and "finished" not in lines(trace)
    assert stack.status(result.id) == "REVOKED"


def test_a_job_checking_is_aborted_stops_and_its_result_is_not_stored(stack, worker, tmp_path):
    trace = tmp_path / "trace.txt"
    result = app.send_task(
        "tests.revoke_jobs.checks_is_aborted", kwargs={"path": str(trace), "seconds": 30}
    )
    wait_until(lambda: lines(trace) == ["started"], 30, message="the job running")
    result.revoke()
    wait_until(lambda: drained(stack), 15, message="the revoked job acknowledged")
    assert lines(trace) == ["started", "saw the revoke"]
    record = stack.item(result.id)
    assert record["status"]["S"] == "REVOKED" and "result" not in record


def test_terminate_stops_a_job_without_progress_within_the_bound(stack, worker, tmp_path):
    from tasks.debug import add
    from tests.jobs import append_line

    side_effect = tmp_path / "effect.txt"
    result = append_line.apply_async(kwargs={"path": str(side_effect), "line": "ran", "hold": 60})
    wait_until(lambda: stack.status(result.id) == "STARTED", 30, message="the job started")
    revoked_at = time.monotonic()
    result.revoke(terminate=True)
    bound = REVOKE_CHECK_SECONDS + 5  # one check period, plus a read and the kill
    wait_until(lambda: drained(stack), bound, message="the terminated job acknowledged")
    stopped_after = time.monotonic() - revoked_at
    record = stack.item(result.id)
    assert record["status"]["S"] == "REVOKED" and record["terminate"]["S"] == "SIGTERM"
    assert lines(side_effect) == []
    assert f"[{result.id}] was revoked with terminate: sending SIGTERM" in worker.log()
    assert stopped_after <= bound
    # The pool replaced its process and the worker serves on.
    assert add.delay(2, 3).get(timeout=30) == 5
    assert worker.alive()


def test_revoking_a_finished_job_leaves_it_and_says_so(stack, worker, caplog):
    from tasks.debug import add

    result = add.delay(2, 3)
    assert result.get(timeout=30) == 5
    outcome = app.control.revoke(result.id, terminate=True)
    assert (outcome.revoked, outcome.status) == (False, "SUCCESS")
    with caplog.at_level(logging.WARNING, logger="tasks.results.control"):
        assert result.revoke() is None  # Celery's AsyncResult.revoke returns nothing
    assert f"job {result.id} not revoked: already SUCCESS" in caplog.text
    fresh = app.AsyncResult(result.id)
    assert (fresh.state, fresh.get(timeout=5)) == ("SUCCESS", 5)
    assert "terminate" not in stack.item(result.id)


def test_group_result_revoke_revokes_every_member(stack, worker):
    from celery import group

    from tasks.debug import add

    members = group(add.s(i, i).set(countdown=4) for i in range(3)).apply_async()
    members.revoke()
    wait_until(lambda: drained(stack), 30, message="the revoked members acknowledged")
    assert [stack.status(r.id) for r in members.results] == ["REVOKED"] * 3


# --- DELETE /jobs/{job_id} through gunicorn, against real workers --------------------------
@pytest.fixture(scope="module")
def shim(stack, worker):
    from tests.http_shim import launch_shim, stop_shim

    served = launch_shim({**stack.env, "JOBS_API_KEYS": "revoke-key"}, "revoke")
    yield served
    stop_shim(served)


KEY = {"x-api-key": "revoke-key"}


def test_delete_cancels_a_queued_job_which_then_never_runs(stack, worker, shim, tmp_path):
    from tests.http_shim import http
    from tests.jobs import append_line

    side_effect = tmp_path / "effect.txt"
    result = append_line.apply_async(kwargs={"path": str(side_effect), "line": "ran"}, countdown=4)
    assert http("DELETE", f"{shim.url}/jobs/{result.id}").status == 403  # keyed like the rest
    answer = http("DELETE", f"{shim.url}/jobs/{result.id}", headers=KEY)
    assert answer.status == 200, answer.body
    assert answer.body["status"] == "REVOKED" and answer.body["revoked_at"]
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    wait_until(lambda: drained(stack), 30, message="the revoked message acknowledged")
    assert lines(side_effect) == []
    assert shim.job(result.id, headers=KEY)["status"] == "REVOKED"
    again = http("DELETE", f"{shim.url}/jobs/{result.id}", headers=KEY)
    assert (again.status, again.body) == (200, answer.body)  # DELETE again: the same record


def test_delete_stops_a_running_job_at_its_next_step(stack, worker, shim):
    from tests.http_shim import http

    job_id = shim.submit("tasks.debug.sleep", {"seconds": 8, "steps": 8}, headers=KEY)
    wait_until(
        lambda: shim.job(job_id, headers=KEY)["status"] == "PROGRESS",
        30,
        message="the job reporting progress",
    )
    answer = http("DELETE", f"{shim.url}/jobs/{job_id}", headers=KEY)
    assert (answer.status, answer.body["status"]) == (200, "REVOKED")
    wait_until(lambda: drained(stack), 15, message="the revoked job acknowledged")
    record = shim.job(job_id, headers=KEY)
    assert record["status"] == "REVOKED" and "result" not in record
    assert record["progress"]["current"] < record["progress"]["total"]


def test_delete_of_a_finished_job_is_409_with_its_record(stack, worker, shim):
    from tests.http_shim import http

    job_id = shim.submit("tasks.debug.add", {"x": 2, "y": 3}, headers=KEY)
    finished = wait_until(
        lambda: (lambda j: j if j["status"] == "SUCCESS" else None)(shim.job(job_id, headers=KEY)),
        30,
        message="the job finished",
    )
    answer = http("DELETE", f"{shim.url}/jobs/{job_id}", headers=KEY)
    assert answer.status == 409
    assert answer.body == finished and answer.body["result"] == 5
    assert app.AsyncResult(job_id).get(timeout=5) == 5


def test_delete_of_a_malformed_id_is_400_and_the_preflight_allows_delete(shim):
    from tests.http_shim import http

    answer = http("DELETE", f"{shim.url}/jobs/not-a-uuid", headers=KEY)
    assert answer.status == 400 and "UUID" in answer.body["message"]
    preflight = http(
        "OPTIONS",
        f"{shim.url}/jobs/{uuid.uuid4()}",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "DELETE"},
    )
    assert preflight.status == 200
    assert "DELETE" in preflight.headers["Access-Control-Allow-Methods"].split(",")


# --- DELETE when DynamoDB throttles or fails (a scripted endpoint; moto never throttles) --
DDB = "com.amazonaws.dynamodb.v20120810#"
REVOKE_FAULTS = [
    ("ProvisionedThroughputExceededException", 400, 429),
    ("ThrottlingException", 400, 429),
    ("RequestLimitExceeded", 400, 429),
    ("InternalServerError", 500, 503),
    ("ResourceNotFoundException", 400, 502),
    ("AccessDeniedException", 400, 502),
]


@pytest.mark.parametrize(
    ("code", "status", "expected"), REVOKE_FAULTS, ids=[c for c, _, _ in REVOKE_FAULTS]
)
def test_delete_answers_throttling_and_faults_as_the_deployed_api(
    tmp_path_factory, code, status, expected
):
    import dataclasses

    from api_shim.app import create_app
    from tests import apigw
    from tests.test_api_throttling import ScriptedAws

    aws = ScriptedAws()
    try:
        settings = dataclasses.replace(
            Settings.from_env(), sqs_endpoint=aws.url, dynamodb_endpoint=aws.url, api_keys=()
        )
        client = create_app(settings).test_client()
        doc = client.application.extensions["gateway"].document
        body = json.dumps({"__type": DDB + code, "message": "injected"})
        case = apigw.Case(
            apigw.response_template(doc, "/jobs/{job_id}", "delete", status),
            body=body,
            job_id="3fa85f64-5717-4562-b3fc-2c963f66afa6",
        )
        rendered = apigw.shim_engine(case)
        if apigw.velocity_available():
            velocity = apigw.Velocity(tmp_path_factory.mktemp("velocity"))
            assert velocity.render_many([case])[0] == rendered
        answer = apigw.integration_answer(doc, "/jobs/{job_id}", "delete", status, body, rendered)
        assert answer.status == expected
        assert (answer.headers.get("Retry-After") == "1") == (expected in (429, 503))
        aws.answer("dynamodb", status, body)
        response = client.delete(f"/jobs/{case.job_id}")
        assert response.status_code == expected
        assert response.get_json() == answer.json()
        assert response.headers.get("Retry-After") == answer.headers.get("Retry-After")
        assert [target for _, target in aws.seen] == ["DynamoDB_20120810.UpdateItem"]
    finally:
        aws.close()
