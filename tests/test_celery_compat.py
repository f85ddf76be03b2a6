"""Celery's result API on our backend, with Celery's own backends as the oracle (issue 22).

Every test runs the very same assertions three times: against Celery's built-in
`cache+memory://` and `dynamodb://` backends (the latter on moto in process) and against
ours (moto in process); where ours does more than Celery's, an extra assertion says so.
What Celery's backends give back is what Celery users rely on; the docs cited are
https://docs.celeryq.dev/en/stable/reference/celery.result.html (`AsyncResult`,
`ResultSet`) and .../userguide/tasks.html ("Custom states", `retry`).
The one test at the end pins the differences that remain, which the table of
docs/celery-compatibility.md lists: it fails when one of them goes away, or another appears.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as clock
from decimal import Decimal
from typing import Any

import boto3
import pytest
from celery import Celery, states
from celery.app.task import Context
from celery.exceptions import ChordError, TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import GroupResult, ResultSet

from tasks.ops.provision import ensure_table
from tasks.results.job_item import MAX_ERROR_CHARS

OURS = "ours"
BACKENDS = {
    "celery-cache": "cache+memory://",
    "celery-dynamodb": "dynamodb://@us-east-1/celery-compat-oracle",
    OURS: "tasks.results.backend:DynamoDBJobBackend",
}
WORKER = "w1@host"  # the hostname of the worker a request ran on


@pytest.fixture(params=list(BACKENDS))
def app(request, in_process_aws) -> Iterator[Celery]:
    """The project's Celery configuration, with one of the three result backends."""
    app = Celery(
        f"compat-{request.param}", set_as_current=False, control="tasks.results.control:Control"
    )
    app.config_from_object("celeryconfig")
    app.conf.result_backend = BACKENDS[request.param]
    app.conf.result_chord_join_timeout = 0.5
    if is_ours(app):
        ensure_table(app.backend.client, app.backend.table)
    elif request.param == "celery-dynamodb":
        # The table Celery's backend would create itself, then sleep a second for.
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            **app.backend._get_table_schema()
        )

    @app.task(name="compat.job", shared=False)
    def job() -> None:  # never run here: its update_state is what the tests call
        return None

    yield app
    app.close()


def is_ours(app: Celery) -> bool:
    return type(app.backend).__module__ == "tasks.results.backend"


def new_id() -> str:
    return str(uuid.uuid4())


def worker_request(task_id: str, **more: Any) -> Context:
    """The request a worker hands the backend (celery.app.trace: task.request)."""
    return Context(
        {
            "id": task_id,
            "task": "compat.job",
            "hostname": WORKER,
            "retries": 0,
            "args": [],
            "kwargs": {},
            "delivery_info": {"routing_key": "jobs"},
            **more,
        }
    )


def exception_of(value: Any) -> tuple[type, tuple] | Any:
    """An exception as what matters of it: its class and arguments."""
    return (type(value), value.args) if isinstance(value, BaseException) else value


# --- 1. timeouts: celery.exceptions.TimeoutError, never the built-in one -------------------


def group_of_one_done_one_running(app: Celery) -> GroupResult:
    done, running = new_id(), new_id()
    app.backend.store_result(done, 1, states.SUCCESS, request=worker_request(done))
    app.backend.store_result(
        running, {"pid": 1, "hostname": WORKER}, states.STARTED, request=worker_request(running)
    )
    return app.GroupResult(new_id(), [app.AsyncResult(done), app.AsyncResult(running)])


WAIT = {"timeout": 0.05, "interval": 0.01}
WAITS = {
    "GroupResult.get": lambda g: g.get(**WAIT),
    "join_native": lambda g: g.join_native(**WAIT),
    "iter_native": lambda g: list(g.iter_native(**WAIT)),
    "join": lambda g: g.join(**WAIT),
    "AsyncResult.get": lambda g: g.results[1].get(**WAIT),
    "backend.get_many": lambda g: list(g.backend.get_many([r.id for r in g.results], **WAIT)),
}


def test_a_wait_that_times_out_raises_celerys_timeout_error(app):
    """celery.result: `get`, `join`, `join_native` "Raises: celery.exceptions.TimeoutError:
    if timeout isn't None and the operation takes longer than timeout seconds". Celery's
    TimeoutError and the built-in one share no base, so `except celery.exceptions.
    TimeoutError`, as the docs write it, must catch what every wait raises."""
    group = group_of_one_done_one_running(app)
    for name, wait in WAITS.items():
        with pytest.raises(CeleryTimeoutError) as raised:
            wait(group)
        assert type(raised.value) is CeleryTimeoutError, name
        assert not isinstance(raised.value, builtins.TimeoutError), name


# --- 2. a RETRY (or failure) stored without an exception reads back as None ----------------


def test_a_retry_without_an_exception_reads_back_as_none(app):
    """tasks.html, retry: `self.retry()` with no `exc`. Celery's worker then stores RETRY
    with no exception (`mark_as_retry(id, None, traceback)`, celery.app.trace) and its
    backends read it back as None, not as an exception made from None; the traceback is
    kept. A RETRY that follows one with an exception replaces it."""
    task_id = new_id()
    request = worker_request(task_id)
    app.backend.mark_as_retry(task_id, RuntimeError("first try"), "Traceback 1", request=request)
    assert exception_of(app.AsyncResult(task_id).result) == (RuntimeError, ("first try",))
    app.backend.mark_as_retry(task_id, None, "Traceback 2", request=request)
    result = app.AsyncResult(task_id)
    assert (result.state, result.result, result.info) == (states.RETRY, None, None)
    assert result.traceback == "Traceback 2"


def test_update_state_of_an_exception_state_without_meta_reads_back_as_none(app):
    """`update_state(state=RETRY)` with no meta (meta=None), or an empty one: Celery's
    backends read None back (BaseBackend.exception_to_python: `if not exc: return None`),
    and no traceback, since none was given."""
    for state, meta in (
        (states.RETRY, None),
        (states.FAILURE, None),
        (states.REVOKED, None),
        (states.FAILURE, {}),
        (states.RETRY, ""),
    ):
        task_id = new_id()
        app.backend.store_result(
            task_id,
            ValueError("before"),
            states.RETRY,
            traceback="Traceback (earlier)",
            request=worker_request(task_id),
        )
        app.tasks["compat.job"].update_state(task_id=task_id, state=state, meta=meta)
        result = app.AsyncResult(task_id)
        assert (result.state, result.result, result.traceback) == (state, None, None), meta


# --- 3. STARTED keeps the meta it was given ------------------------------------------------


def test_update_state_started_keeps_its_meta(app):
    """Celery's integration test test_revoke_keeps_state_of_task_started_elsewhere writes
    `update_state(state="STARTED", meta={"hostname": ...})` and reads it back: the built-in
    backends give back whatever meta was written."""
    for meta in (
        {"hostname": "other@host"},
        {"pid": 4321, "hostname": "other@host"},
        {},
        None,
        {"step": "download", "of": 3},
        ["a", 1],
    ):
        task_id = new_id()
        app.tasks["compat.job"].update_state(task_id=task_id, state=states.STARTED, meta=meta)
        result = app.AsyncResult(task_id)
        assert (result.state, result.info) == (states.STARTED, meta)


def test_a_restart_replaces_the_progress_of_the_attempt_before(app):
    """Each store replaces the meta before it: a job that reported progress, then retried
    and started again, shows its new start, not the old progress; and its worker's start
    meta shows that worker (`info["hostname"]`)."""
    task_id = new_id()
    job = app.tasks["compat.job"]
    job.update_state(task_id=task_id, state=states.STARTED, meta={"hostname": "other@host"})
    app.backend.store_result(
        task_id, {"current": 2, "total": 5}, "PROGRESS", request=worker_request(task_id)
    )
    app.backend.mark_as_retry(task_id, None, "Traceback", request=worker_request(task_id))
    app.backend.store_result(
        task_id,
        {"pid": 99, "hostname": WORKER},
        states.STARTED,
        request=worker_request(task_id, retries=1),
    )
    result = app.AsyncResult(task_id)
    assert result.state == states.STARTED
    assert result.info["hostname"] == WORKER
    assert "current" not in result.info


# --- every meta shape update_state takes ---------------------------------------------------


class Nested:
    class Error(Exception):
        """A class inside a class: Celery stores its __qualname__."""


META_SHAPES = [  # (state, meta, what reads back)
    ("PROGRESS", {"current": 1, "total": 3}, {"current": 1, "total": 3}),
    ("PROGRESS", None, None),
    ("PROGRESS", "half way", "half way"),
    ("PROGRESS", [1, 2], [1, 2]),
    (states.PENDING, {"queued_behind": 3}, {"queued_behind": 3}),
    (states.RETRY, ValueError("v", 2), (ValueError, ("v", 2))),
    (states.RETRY, KeyError(), (KeyError, ())),
    (states.FAILURE, Nested.Error("deep"), (Nested.Error, ("deep",))),
    (states.FAILURE, TaskRevokedError("revoked"), (TaskRevokedError, ("revoked",))),
    # tasks.html, "Custom states" with Ignore: meta written as Celery's exception dict.
    (
        states.FAILURE,
        {
            "exc_type": "ValueError",
            "exc_message": ["bad", "row 3"],
            "exc_module": "builtins",
            "custom": "dropped",
        },
        (ValueError, ("bad", "row 3")),
    ),
    (
        states.FAILURE,
        {"exc_type": "NoSuchClassHere", "exc_message": "x", "exc_module": "no.such.module"},
        ("NoSuchClassHere", ("x",)),
    ),
]


def test_every_meta_shape_update_state_takes_reads_back_as_in_celery(app):
    """Task.update_state(task_id, state, meta): meta of a custom or waiting state reads
    back as written; of RETRY and FAILURE, as the exception rebuilt from its class, module
    and arguments (BaseBackend.exception_to_python), an unknown class as a stand-in of the
    same name."""
    for state, meta, expected in META_SHAPES:
        task_id = new_id()
        app.tasks["compat.job"].update_state(task_id=task_id, state=state, meta=meta)
        result = app.AsyncResult(task_id)
        got = exception_of(result.info)
        if isinstance(expected, tuple) and isinstance(expected[0], str):  # a stand-in class
            got = (type(result.info).__name__, result.info.args)
        assert (result.state, got) == (state, expected), meta


AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
TAGGED = [
    AT,
    date(2026, 1, 2),
    clock(3, 4, 5),
    Decimal("1.10"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"text",
    b"\xff\x00",
    {"when": [AT], "count": 2},
]


def test_values_read_back_as_celerys_json_decodes_them(app):
    """configuration.html, result_serializer "json": Celery encodes with kombu's JSON, which
    writes a datetime, date, time, Decimal, UUID or bytes as a tagged object, and its
    backends decode them back into those types: in a result, in a custom state's meta and
    in an exception's arguments."""
    for value in TAGGED:
        task_id = new_id()
        app.backend.store_result(task_id, value, states.SUCCESS, request=worker_request(task_id))
        got = app.AsyncResult(task_id).get(timeout=1)
        assert (type(got), got) == (type(value), value)
        task_id = new_id()
        app.tasks["compat.job"].update_state(task_id=task_id, state="PROGRESS", meta={"at": value})
        assert app.AsyncResult(task_id).info == {"at": value}
    task_id = new_id()
    error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    app.backend.mark_as_failure(task_id, error, request=worker_request(task_id))
    assert exception_of(app.AsyncResult(task_id).result) == exception_of(error)


def test_a_result_over_what_an_item_holds_reads_back_whole(app):
    """A result of 400 KB of JSON reads back whole. Ours keeps it in S3 and decodes it as
    a result in the record (docs/job-record.md, Large results); Celery's DynamoDB
    backend would be refused on AWS (an item holds 400 KB), not by moto."""
    value = {"rows": ["x" * 1000] * 400, "at": AT}
    task_id = new_id()
    if is_ours(app):
        app.backend.s3.create_bucket(Bucket=app.backend.settings.bucket_name)
    app.backend.store_result(task_id, value, states.SUCCESS, request=worker_request(task_id))
    assert app.AsyncResult(task_id).get(timeout=1) == value


def test_extended_meta_names_the_group_and_parent(app):
    """result_extended: the meta has the request's name, arguments, worker, retries and
    queue, and (BaseBackend._get_result_meta) its group_id and parent_id when it has them."""
    task_id = new_id()
    request = worker_request(
        task_id,
        group="g-1",
        parent_id="p-1",
        args=[2, 3],
        kwargs={"y": 1},
        argsrepr="[2, 3]",
        kwargsrepr="{'y': 1}",
    )
    app.backend.store_result(task_id, 5, states.SUCCESS, request=request)
    meta = app.backend.get_task_meta(task_id, cache=False)
    assert (meta["group_id"], meta["parent_id"]) == ("g-1", "p-1")
    result = app.AsyncResult(task_id)
    assert (
        result.name,
        result.args,
        result.kwargs,
        result.worker,
        result.retries,
        result.queue,
    ) == ("compat.job", [2, 3], {"y": 1}, WORKER, 0, "jobs")
    assert result.date_done.tzinfo is not None


# --- the exceptions a group, a revoke and a chord raise -----------------------------------


def revoke(app: Celery, task_id: str) -> None:
    """What a revoke leaves in the backend. Celery's worker stores TaskRevokedError
    ("revoked") when it drops the revoked task (Request._announce_revoked); ours writes
    the same on the record at once (tasks.results.control)."""
    if is_ours(app):
        app.AsyncResult(task_id).revoke()
    else:
        app.backend.mark_as_revoked(task_id, "revoked", request=worker_request(task_id))


def test_a_group_raises_its_members_exception_or_returns_it(app):
    """ResultSet.join/get: "If any of the tasks raises an exception, the exception will be
    re-raised when propagate is set"; with propagate=False "the corresponding position in
    the list contains the exception instance". A revoked member raises TaskRevokedError."""
    ok, failed, revoked = new_id(), new_id(), new_id()
    app.backend.store_result(ok, 1, states.SUCCESS, request=worker_request(ok))
    app.backend.mark_as_failure(
        failed, ValueError("bad row", 3), "Traceback", request=worker_request(failed)
    )
    revoke(app, revoked)
    for ids, error in (
        ([ok, failed], (ValueError, ("bad row", 3))),
        ([ok, revoked], (TaskRevokedError, ("revoked",))),
    ):
        group = app.GroupResult(new_id(), [app.AsyncResult(i) for i in ids])
        for wait in (group.get, group.join, group.join_native, ResultSet(group.results).join):
            with pytest.raises(BaseException) as raised:
                wait(timeout=1, interval=0.02)
            assert exception_of(raised.value) == error, wait
        values = group.join(timeout=1, propagate=False)
        assert [exception_of(v) for v in values] == [1, error]


def test_a_chord_with_a_failed_member_fails_its_body_with_a_chord_error(app):
    """canvas.html, "Error handling": when a member of a chord's header fails, the body
    fails with a ChordError, shown there as "Dependency <id> raised <repr of the
    exception>" (Celery's Redis backend's words). Celery's cache and DynamoDB backends
    name no member: they look for it among cached results, and only a SUCCESS is cached;
    ours names it, as the docs do."""
    ok, failed = new_id(), new_id()
    group_id = new_id()
    body = app.signature("compat.not-registered.body")  # its error stays in this backend
    body.freeze()
    header = app.GroupResult(group_id, [app.AsyncResult(ok), app.AsyncResult(failed)])
    app.backend.apply_chord((group_id, header.results), body)
    app.backend.set_chord_size(group_id, 2)
    chord = dict(body, chord_size=2)
    app.backend.store_result(ok, 1, states.SUCCESS, request=worker_request(ok))
    app.backend.on_chord_part_return(
        worker_request(ok, group=group_id, chord=chord), states.SUCCESS, 1
    )
    boom = ValueError("boom")
    app.backend.store_result(failed, boom, states.FAILURE, request=worker_request(failed))
    app.backend.on_chord_part_return(
        worker_request(failed, group=group_id, chord=chord), states.FAILURE, boom
    )
    result = app.AsyncResult(body.id)
    assert result.state == states.FAILURE
    with pytest.raises(ChordError) as raised:
        result.get(timeout=1)
    assert type(raised.value) is ChordError
    assert str(raised.value).endswith("ValueError('boom')")
    if is_ours(app):
        assert str(raised.value) == f"Dependency {failed} raised ValueError('boom')"


# --- what still differs (docs/celery-compatibility.md) ------------------------------------

DIFFERENCES = {
    # name: (the call, what Celery's backends do, what ours does)
    "start meta without pid": (
        lambda app, tid: app.backend.store_result(
            tid, {"pid": 4321, "hostname": WORKER}, states.STARTED, request=worker_request(tid)
        ),
        {"pid": 4321, "hostname": WORKER},
        {"hostname": WORKER},
    ),
    "RETRY meta that is no exception": (
        lambda app, tid: app.tasks["compat.job"].update_state(
            task_id=tid, state=states.RETRY, meta={"attempt": 2}
        ),
        ValueError,
        ("dict", ("{'attempt': 2}",)),
    ),
    "custom state meta that is not JSON": (
        lambda app, tid: app.tasks["compat.job"].update_state(
            task_id=tid, state="PROGRESS", meta=RuntimeError("x")
        ),
        "EncodeError",
        {"message": "RuntimeError('x')"},
    ),
    "exception arguments over what the record keeps": (
        lambda app, tid: app.backend.mark_as_failure(
            tid, ValueError("x" * 5000), request=worker_request(tid)
        ),
        ("ValueError", ("x" * 5000,)),
        ("ValueError", ("x" * (MAX_ERROR_CHARS - 4),)),
    ),
}


def test_the_differences_the_readme_lists(app):
    """Where ours still differs from Celery's backends, and how: the table in the docs
    says so. Celery's pid of a started job is not kept (the record's `worker` is); arguments of
    an exception over 4,000 characters of JSON are cut to the start of its message; meta
    that Celery cannot store or read back (EncodeError, ValueError) is kept and read."""
    for name, (call, celery_does, ours_does) in DIFFERENCES.items():
        task_id = new_id()
        try:
            call(app, task_id)
            info = app.backend.get_task_meta(task_id, cache=False)["result"]
            got = (type(info).__name__, info.args) if isinstance(info, BaseException) else info
        except Exception as exc:  # Celery's refusal: kombu's EncodeError, or a ValueError
            kind = type(exc)
            got = kind.__name__ if kind.__module__.startswith("kombu") else kind
        assert got == (ours_does if is_ours(app) else celery_does), name
