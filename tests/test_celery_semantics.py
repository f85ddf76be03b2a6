"""Celery's documented behaviour, against real worker processes on moto's server.

Each test names the page and section of Celery's documentation it checks
(https://docs.celeryq.dev/en/stable/...) and asserts what that page says the
call returns. Chords (item 2 of issue 10) and revocation (item 4) are tested
with their own work; the one chord here is the chain-of-a-group upgrade.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import chain, group, states
from celery.exceptions import TaskRevokedError
from celery.result import GroupResult, ResultSet

from tasks.debug import add, fail, sleep
from tasks.jobkit.errors import InvalidJobInput
from tests.celery_semantics_jobs import (
    ExpectedException,
    error_of,
    fail_with,
    log_error,
    mul,
    retry_once,
    subtract,
)
from tests.conftest import Stack, Worker, launch_worker, wait_until
from tests.jobs import total

pytestmark = pytest.mark.integration

DOCS = "https://docs.celeryq.dev/en/stable"
TIMEOUT = 60


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    """One worker with the jobs Celery's documentation uses (tests.celery_semantics_jobs)."""
    proc = launch_worker(
        stack, "semantics", 2, env={"JOBS_EXTRA_MODULES": "tests.jobs,tests.celery_semantics_jobs"}
    )
    yield proc
    proc.close()


# --- arguments as Celery passes them ---------------------------------------------------


def test_delay_with_positional_arguments(worker):
    """calling.html, Basics: `task.delay(arg1, arg2, kwarg1='x')` is
    `apply_async(args=[arg1, arg2], kwargs={...})`; `add.delay(2, 3)` runs add(2, 3)."""
    assert add.delay(2, 3).get(timeout=TIMEOUT) == 5
    assert subtract.delay(30, y=10).get(timeout=TIMEOUT) == 20


def test_apply_async_with_args_and_kwargs(worker):
    """calling.html, Quick Cheat Sheet: `T.apply_async((arg,), {'kwarg': value})`."""
    assert add.apply_async((2,), {"y": 5}).get(timeout=TIMEOUT) == 7
    assert subtract.apply_async(args=[1, 2]).get(timeout=TIMEOUT) == -1


def test_partials_prepend_their_arguments(worker):
    """canvas.html, Partials: "Any arguments added will be prepended to the args in the
    signature": `subtract.s(10).delay(30)` is subtract(30, 10) = 20."""
    assert subtract.s(10).delay(30).get(timeout=TIMEOUT) == 20
    assert subtract.s(y=10).apply_async((30,)).get(timeout=TIMEOUT) == 20
    assert subtract.si(5, 1).delay().get(timeout=TIMEOUT) == 4


def test_chains_pass_the_previous_result_as_the_first_argument(worker):
    """canvas.html, Chains: "The linked task will be applied with the result of its parent
    task as the first argument"; `chain(add.s(4, 4), mul.s(8), mul.s(10))()` gives 640,
    and `res.parent.get()` the intermediate 64. An immutable `si()` step ignores it."""
    res = chain(add.s(4, 4), mul.s(8), mul.s(10))()
    assert res.get(timeout=TIMEOUT) == 640
    assert res.parent.get(timeout=TIMEOUT) == 64
    assert res.parent.parent.get(timeout=TIMEOUT) == 8
    assert chain(add.s(x=1, y=2), add.s(y=10))().get(timeout=TIMEOUT) == 13
    assert (add.s(1, 1) | add.si(5, 5))().get(timeout=TIMEOUT) == 10


def test_a_group_inside_a_chain_receives_the_previous_result(worker):
    """canvas.html, Group Unrolling: `chain(add.s(2, 2), group(add.s(1), add.s(2)))`
    passes 4 to each member of the group."""
    res = chain(add.s(2, 2), group(add.s(1), add.s(2)))()
    assert res.get(timeout=TIMEOUT) == [5, 6]


def test_a_chain_of_a_group_into_a_task_is_a_chord(worker):
    """canvas.html, Chains: "Chaining a group together with another task will
    automatically upgrade it to be a chord"; the task receives the group's results."""
    res = chain(group(add.s(1, 1), add.s(2, 2)), total.s())()
    assert res.get(timeout=TIMEOUT) == 6


@pytest.mark.parametrize(
    "call, problem",
    [
        (lambda: add.delay(1, 2, 3), "too many positional arguments (got 3)"),
        (lambda: add.delay(1, 2, z=3), "Additional properties are not allowed (allowed: x, y)"),
        (lambda: total.delay([1], scale=2), "got a keyword argument it does not take"),
        (lambda: add.delay(1, x=2), "multiple values for argument 'x'"),
        (lambda: add.delay(1), "'y' is a required property"),
        (lambda: add.delay("one", 2), "x: is not of type 'number'"),
    ],
)
def test_arguments_that_do_not_bind_fail_with_invalid_job_input(worker, call, problem):
    """tasks.html, Argument checking: a call that does not match the task's signature is
    an error. Here the worker binds the arguments (the task signature is checked there,
    so `send_task` by name is checked too) and the job FAILs with InvalidJobInput."""
    result = call()
    with pytest.raises(InvalidJobInput) as info:
        result.get(timeout=TIMEOUT)
    assert problem in str(info.value)
    assert result.state == states.FAILURE


# --- failures ------------------------------------------------------------------------------


def test_get_raises_the_task_exception_or_returns_it(worker):
    """Result API (celery.result.AsyncResult.get): "If the remote call raised an exception
    then that exception will be re-raised"; with propagate=False "the raised exception
    instance is returned"; `.result` is the exception instance, `.traceback` the traceback."""
    res = fail.delay(message="boom")
    with pytest.raises(RuntimeError, match="boom"):
        res.get(timeout=TIMEOUT)
    exc = res.get(propagate=False)
    assert type(exc) is RuntimeError and exc.args == ("boom",)
    assert type(res.result) is RuntimeError
    assert "raise RuntimeError(message)" in res.traceback
    assert res.failed() and not res.successful() and res.ready()


def test_exceptions_round_trip_with_every_argument(worker):
    """tasks.html, Creating pickleable exceptions: an exception's `args` are what is kept;
    Celery's backends rebuild `type(*args)` (BaseBackend.exception_to_python), so
    ExpectedException("Task expected to fail", "test") comes back equal."""
    raised = ExpectedException("Task expected to fail", "test")
    res = fail_with.delay("Task expected to fail", "test")
    with pytest.raises(ExpectedException) as info:
        res.get(timeout=TIMEOUT)
    assert info.value == raised
    assert type(info.value) is ExpectedException
    assert res.get(propagate=False) == raised


def test_a_group_with_a_failing_member_propagates_its_exception(worker):
    """canvas.html, Group Results and the Result API (ResultSet.join / join_native / get):
    "If any of the tasks raises an exception, the exception will be re-raised when
    [propagate] is set"; else "the corresponding position in the list contains the
    exception instance instead of a return value"."""
    res = group(add.s(x=1, y=1), fail.s(message="boom"))()
    with pytest.raises(RuntimeError, match="boom"):
        res.get(timeout=TIMEOUT)
    for read in (res.get, res.join, res.join_native):
        value, exc = read(timeout=TIMEOUT, propagate=False)
        assert value == 2
        assert type(exc) is RuntimeError and exc.args == ("boom",)
    with pytest.raises(RuntimeError, match="boom"):
        res.join(timeout=TIMEOUT)
    with pytest.raises(RuntimeError, match="boom"):
        res.join_native(timeout=TIMEOUT)
    assert res.failed() and not res.successful() and res.completed_count() == 1
    metas = dict(res.iter_native(timeout=TIMEOUT))
    failed = metas[res.results[1].id]
    assert failed["status"] == states.FAILURE and type(failed["result"]) is RuntimeError


def test_a_result_set_of_several_exceptions_keeps_each_one(worker):
    """Result API (celery.result.ResultSet.join): results in call order, exceptions in the
    positions of the tasks that raised them (propagate=False)."""
    results = ResultSet(
        [
            fail_with.delay("Task expected to fail", "test"),
            add.delay(2, 2),
            fail.delay(message="second"),
        ]
    )
    first, value, last = results.join(timeout=TIMEOUT, propagate=False)
    assert first == ExpectedException("Task expected to fail", "test")
    assert value == 4
    assert type(last) is RuntimeError and last.args == ("second",)
    with pytest.raises(ExpectedException):  # join: in call order, the first one raises
        results.join(timeout=TIMEOUT)
    with pytest.raises((ExpectedException, RuntimeError)):  # get: join_native, as they come
        results.get(timeout=TIMEOUT)


def test_collect_yields_the_result_or_raises(worker):
    """Result API (AsyncResult.collect): "like get() will wait for the task to complete",
    yielding (result, value) tuples. Children are not recorded here (see the docs), so
    only the task itself is yielded."""
    ok = add.delay(2, 3)
    assert [(r.id, v) for r, v in ok.collect(timeout=TIMEOUT)] == [(ok.id, 5)]
    with pytest.raises(RuntimeError, match="boom"):
        list(fail.delay(message="boom").collect(timeout=TIMEOUT))


# --- link and link_error -----------------------------------------------------------------


def test_link_applies_the_callback_with_the_result(worker):
    """calling.html, Linking: `add.apply_async((2, 2), link=add.s(16))`: "the result of
    the first task (4) will be sent to a new task that adds 16 ... (2 + 2) + 16 = 20"."""
    callback = add.s(16)
    child = callback.freeze()
    parent = add.apply_async((2, 2), link=callback)
    assert parent.get(timeout=TIMEOUT) == 4
    assert child.get(timeout=TIMEOUT) == 20


def test_link_error_calls_an_errback_with_request_exception_and_traceback(worker, tmp_path):
    """calling.html, Linking / canvas.html, Chains: "The worker won't actually call the
    errback as a task, but will instead call the errback function directly so that the
    raw request, exception and traceback objects can be passed to it" (`log_error`)."""
    out = tmp_path / "errback.json"
    res = fail_with.apply_async(
        ("Task expected to fail", "test"), link_error=log_error.s(path=str(out))
    )
    with pytest.raises(ExpectedException):
        res.get(timeout=TIMEOUT)
    got = json.loads(
        wait_until(lambda: out.exists() and out.read_text(), TIMEOUT, message="the errback's file")
    )
    assert got["request_id"] == res.id
    assert (got["type"], got["module"]) == ("ExpectedException", "tests.celery_semantics_jobs")
    assert got["args"] == ["Task expected to fail", "test"] and got["equal"]
    assert "ExpectedException" in got["traceback"]


def test_a_bound_errback_is_sent_the_failed_task_id_and_reads_the_real_error(worker):
    """Celery 5.7 calls a bound errback (`bind=True`, every @job) as a task with the failed
    task's id (Backend._call_task_errbacks: "workaround to support tasks with bind=True
    executed as link errors"); `AsyncResult(id).result` there is the exception, rebuilt
    with its type, module and every argument."""
    errback = error_of.s()
    handled = errback.freeze()
    res = fail_with.apply_async(("Task expected to fail", "test"), link_error=errback)
    with pytest.raises(ExpectedException):
        res.get(timeout=TIMEOUT)
    assert handled.get(timeout=TIMEOUT) == {
        "type": "ExpectedException",
        "module": "tests.celery_semantics_jobs",
        "args": ["Task expected to fail", "test"],
        "equal": True,
    }


# --- results ---------------------------------------------------------------------------------


def test_group_result_save_and_restore(worker):
    """Result API (GroupResult.save / restore / delete): "Save group-result for later
    retrieval using restore()"; a deleted group restores to None."""
    res = group(add.s(1, 1), add.s(2, 2))()
    res.save()
    restored = GroupResult.restore(res.id)
    assert restored is not None and restored.id == res.id
    assert [r.id for r in restored.results] == [r.id for r in res.results]
    assert restored.get(timeout=TIMEOUT) == [2, 4]
    restored.delete()
    assert GroupResult.restore(res.id) is None


def test_extended_result_attributes(stack, worker):
    """Result API (AsyncResult.ready / successful / failed / date_done / name / args /
    kwargs / worker / retries / queue) with configuration.html's result_extended: "Enables
    extended task result attributes (name, args, kwargs, worker, retries, queue...)"."""
    before = datetime.now(UTC)
    res = add.apply_async((2,), {"y": 3})
    assert res.get(timeout=TIMEOUT) == 5
    assert res.ready() and res.successful() and not res.failed()
    assert before <= res.date_done <= datetime.now(UTC)
    assert res.name == "tasks.debug.add"
    assert (res.args, res.kwargs) == ([2], {"y": 3})
    assert res.worker == worker.name
    assert res.retries == 0
    assert res.queue == stack.env["JOBS_QUEUE_NAME"]


def test_a_started_job_shows_its_worker_and_keeps_no_start_meta(stack, worker):
    """tasks.html, Built-in states, STARTED: "meta-data: pid and hostname of the worker
    process executing the task". `info["hostname"]` is the worker (the record's `worker`;
    the pid is not kept: docs/celery-compatibility.md). The start meta is not stored as
    `progress`, which HTTP shows: a job that hides its worker keeps it hidden."""
    res = sleep.delay(seconds=2, steps=1)  # STARTED for 2 s, then PROGRESS

    def started() -> dict | None:
        item = stack.item(res.id)
        return item if item and item["status"]["S"] == states.STARTED else None

    item = wait_until(started, TIMEOUT, interval=0.05, message="the STARTED record")
    assert "progress" not in item
    meta = sleep.backend.meta_from_item(res.id, item)
    assert meta["result"] == {"hostname": worker.name}
    assert res.get(timeout=TIMEOUT) == {"slept": 2, "steps": 1}


def test_retry_with_countdown(stack, worker):
    """tasks.html, Retrying: retry "will send a new message, using the same task-id";
    "When a task is retried this is also recorded as a task state" (RETRY), and it runs
    again after `countdown` seconds."""
    started = time.monotonic()
    res = retry_once.delay(countdown=3)
    wait_until(lambda: res.state == states.RETRY, TIMEOUT, interval=0.1, message="the RETRY state")
    assert type(res.result) is RuntimeError
    assert res.get(timeout=TIMEOUT) == 1
    assert time.monotonic() - started >= 3
    assert res.retries == 1


def test_countdown_and_eta_run_the_task_no_earlier(stack, worker):
    """calling.html, ETA and Countdown: "The task is guaranteed to be executed at some time
    *after* the specified date and time"; `add.apply_async((2, 2), countdown=3)`."""
    sent = datetime.now(UTC)
    by_countdown = add.apply_async((2, 2), countdown=3)
    by_eta = add.apply_async((3, 3), eta=sent + timedelta(seconds=3))
    assert by_countdown.get(timeout=TIMEOUT) == 4
    assert by_eta.get(timeout=TIMEOUT) == 6
    for res in (by_countdown, by_eta):
        started = datetime.fromisoformat(stack.item(res.id)["started_at"]["S"])
        assert started >= sent + timedelta(seconds=3)


def test_an_expired_task_is_revoked(stack, worker):
    """calling.html, Expiration: "When a worker receives an expired task it will mark the
    task as REVOKED (TaskRevokedError)"; it never runs."""
    res = add.apply_async((10, 10), countdown=2, expires=1)
    with pytest.raises(TaskRevokedError):
        res.get(timeout=TIMEOUT)
    assert res.state == states.REVOKED
    item = stack.item(res.id)
    assert item["error"]["M"]["type"]["S"] == "TaskRevokedError"
    assert "started_at" not in item


def test_ignore_result_stores_nothing(stack, worker):
    """calling.html, Results options / tasks.html, Ignore results you don't want:
    `add.apply_async((1, 2), ignore_result=True)`, "No result will be stored",
    `result.get()` is None. Celery skips the STARTED write too (task_track_started
    applies only to results it stores), so the job has no record at all."""
    res = add.apply_async((1, 2), ignore_result=True)
    failed = fail.apply_async(kwargs={"message": "unseen"}, ignore_result=True)
    assert res.get() is None and failed.get() is None
    wait_until(
        lambda: f"[{res.id}] succeeded" in worker.log(),
        TIMEOUT,
        message="the worker's log of the job",
    )
    wait_until(
        lambda: f"[{failed.id}] raised unexpected" in worker.log(),
        TIMEOUT,
        message="the worker's log of the failed job",
    )
    # Failures too, unless store_errors_even_if_ignored (tasks.html, Task options).
    assert stack.item(res.id) is None and stack.item(failed.id) is None
    assert add.AsyncResult(res.id).state == states.PENDING


def test_forget_removes_the_result(stack, worker):
    """Result API (AsyncResult.forget): "Forget the result of this task and its parents";
    the record is deleted and the id reads PENDING (unknown) again."""
    res = add.delay(1, 2)
    assert res.get(timeout=TIMEOUT) == 3
    res.forget()
    assert stack.item(res.id) is None
    assert add.AsyncResult(res.id).state == states.PENDING


# --- a service that has only the client ------------------------------------------------------

CLIENT_SCRIPT = r"""
import importlib.abc, json, sys

JOB_CODE = ("tasks.text", "tasks.documents", "tasks.enrich", "tasks.debug", "tasks.worker",
            "tasks.celery_app", "tasks.jobkit.registry", "tasks.jobkit.task", "tests")
attempted = []

class NoJobCode(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in JOB_CODE):
            attempted.append(name)
            raise ImportError(f"the client may not import {name}")
        return None

sys.meta_path.insert(0, NoJobCode())

from tasks.client import app

out = {}
by_kwargs = app.send_task("tasks.debug.add", kwargs={"x": 2, "y": 3})
out["kwargs"] = by_kwargs.get(timeout=60)
by_args = app.send_task("tasks.debug.add", args=[20, 3])
out["args"] = app.AsyncResult(by_args.id).get(timeout=60)
out["text"] = sorted(app.send_task("tasks.text.analyze",
                                   kwargs={"text": "One. Two three."}).get(timeout=60))
try:
    app.send_task("tasks.debug.fail", kwargs={"message": "boom"}).get(timeout=60)
except RuntimeError as exc:
    out["fail"] = [type(exc).__name__, list(exc.args)]
exc = app.send_task("tests.celery_semantics_jobs.fail_with",
                    args=["Task expected to fail", "test"]).get(timeout=60, propagate=False)
out["custom"] = [type(exc).__name__, type(exc).__module__, list(exc.args),
                 isinstance(exc, Exception)]
bad = app.send_task("tasks.debug.add", args=[1, 2, 3]).get(timeout=60, propagate=False)
out["invalid"] = [type(bad).__module__ + "." + type(bad).__name__, str(bad)]
out["attempted"] = attempted
out["loaded"] = sorted(m for m in sys.modules if any(
    m == j or m.startswith(j + ".") for j in JOB_CODE))
print(json.dumps(out))
"""


def test_a_service_with_only_the_client_submits_by_name_and_reads_results(
    stack, worker, tmp_path: Path
):
    """calling.html / the Result API from a process without the job code: the docs'
    client (`from tasks.client import app`) sends `app.send_task(name, args, kwargs)` and
    reads `AsyncResult(id).get()`; it never imports a job module nor tasks.worker. A custom
    exception it cannot import comes back as Celery's stand-in (exception_to_python: a
    class of that name in celery.exceptions), with the same arguments."""
    env = {k: v for k, v in stack.env.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kwargs"] == 5 and out["args"] == 23
    assert {"words", "sentences", "keywords"} <= set(out["text"])
    assert out["fail"] == ["RuntimeError", ["boom"]]
    assert out["custom"] == [
        "ExpectedException",
        "celery.exceptions",
        ["Task expected to fail", "test"],
        True,
    ]
    assert out["invalid"][0] == "tasks.jobkit.errors.InvalidJobInput"
    assert "too many positional arguments" in out["invalid"][1]
    assert out["attempted"] == [] and out["loaded"] == []
