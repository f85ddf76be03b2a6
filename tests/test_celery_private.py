"""Contract tests for tasks.celery_private: every private name we rely on still exists.

An upgrade of celery, kombu or billiard that renames, removes or re-signs one of these fails
here, by name, instead of silently in a worker.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.worker import state as worker_state
from kombu.asynchronous import Hub

from tasks import celery_private


@pytest.mark.parametrize(
    ("cls", "name", "expected"),
    celery_private.OVERRIDDEN,
    ids=[f"{c.__name__}.{n}" for c, n, _ in celery_private.OVERRIDDEN],
)
def test_each_method_we_override_or_call_exists_with_the_parameters_we_pass(cls, name, expected):
    assert callable(getattr(cls, name, None)), f"{cls.__module__}.{cls.__name__}.{name} is gone"
    actual = celery_private.parameters(cls, name)
    assert actual[: len(expected)] == expected, (
        f"{cls.__name__}.{name}{actual}: we rely on {expected}"
    )


def test_the_worker_state_we_read_is_there():
    for name in ("requests", "active_requests", "reserved_requests", "revoked"):
        assert hasattr(worker_state, name), name
    assert celery_private.held_requests() == list(worker_state.requests.values())
    assert hasattr(worker_state, "scheduled_requests")

    # Two requests of one job id (a duplicate delivery): `requests` keeps one, we hold both.
    class Held:  # weak-referenceable, as Celery's requests are
        id = "same"

    first, second = Held(), Held()
    try:
        worker_state.requests["same"] = second
        worker_state.active_requests.add(first)
        assert {id(r) for r in celery_private.held_requests()} == {id(first), id(second)}
    finally:
        worker_state.requests.pop("same", None)
        worker_state.active_requests.discard(first)
    assert celery_private.active_or_reserved() is bool(
        worker_state.active_requests or worker_state.reserved_requests
    )


def test_a_request_keeps_its_message_dict_and_context_where_we_read_them():
    from tasks import app

    message = SimpleNamespace(
        headers={"id": "r1", "task": "tasks.debug.add", "timelimit": [None, None]},
        body=b'[[], {"x": 1, "y": 2}, {}]',
        content_type="application/json",
        content_encoding="utf-8",
        payload=([], {"x": 1, "y": 2}, {}),
        delivery_info={},
        properties={},
        decode=lambda: ([], {"x": 1, "y": 2}, {}),
    )
    request = celery_private.Request(message, app=app, task=app.tasks["tasks.debug.add"])
    assert celery_private.request_message(request) is message
    assert celery_private.request_dict(request)["id"] == "r1"
    assert celery_private.request_context(request).id == "r1"
    assert celery_private.delivery_count(request) is None
    celery_private.request_dict(request)["delivery_count"] = 2
    assert celery_private.delivery_count(request) == 2


def test_the_current_app_is_reached_through_celerys_proxy():
    from celery import Celery

    before = celery_private.current_app_object()
    made = Celery("probe", set_as_current=True)
    try:
        assert celery_private.current_app_object() is made
    finally:
        before.set_current()
    assert celery_private.current_app_object() is before


def test_the_hub_records_its_loop_thread():
    hub = Hub()
    assert hasattr(hub, "_loop_thread")
    assert celery_private.loop_thread(hub) is None  # not running yet
    hub.close()


def test_the_pool_says_how_many_jobs_it_runs_at_once():
    from celery.concurrency.base import BasePool
    from celery.concurrency.prefork import TaskPool

    assert celery_private.pool_size(SimpleNamespace(pool=BasePool(limit=3))) == 3
    assert celery_private.pool_size(SimpleNamespace(pool=None)) is None
    pool = TaskPool(limit=2)
    assert celery_private.pool_size(SimpleNamespace(pool=pool)) is None  # not started
    pool.start()
    try:
        assert celery_private.pool_size(SimpleNamespace(pool=pool)) == 2
    finally:
        pool.stop()
        pool.terminate()


def test_the_prefork_pool_keeps_its_processes_where_we_look():
    from billiard.pool import Pool

    pool = Pool(processes=1, threads=False)
    try:
        consumer = SimpleNamespace(pool=SimpleNamespace(_pool=pool))
        processes = celery_private.pool_processes(consumer)
        assert len(processes) == 1 and processes[0].pid
    finally:
        pool.close()
        pool.join()


def test_the_sqs_channel_has_the_state_we_read(in_process_aws):
    import boto3
    from kombu import Connection

    from tasks.worker.transport import Transport

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="contract")["QueueUrl"]
    with Connection(
        "sqs://",
        transport=Transport,
        transport_options={"region": "us-east-1", "predefined_queues": {"contract": {"url": url}}},
    ) as conn:
        channel = conn.channel()
        assert celery_private.channel_queue_url(channel, "contract") == url
        assert celery_private.channel_is_consuming(channel, "contract") is False
        assert hasattr(channel.qos, "can_consume_max_estimate")
        assert hasattr(channel.qos, "prefetch_count")
        assert celery_private.channel_queue_name(channel, "contract") == "contract"
        assert hasattr(channel, "hub")  # set in __init__: None outside a worker's loop
        assert celery_private.channel_hub(channel) is channel.hub
        celery_private.set_qos_prefetch(channel, 7)
        assert celery_private.qos_prefetch(channel) == 7 == channel.qos.prefetch_count
        assert celery_private.qos_free(channel) == 7  # nothing held yet
        with pytest.raises(KeyError):
            celery_private.delivery_info(channel, "no-such-tag")
        channel.close()


def test_the_task_context_names_its_methods_and_celery_parses_dates_and_reprs_as_we_use_them():
    from datetime import datetime

    assert "get" in celery_private.context_method_names()  # `get` was a header once
    assert all(not n.startswith("_") for n in celery_private.context_method_names())
    parsed = celery_private.maybe_iso8601("2026-12-01T06:00:00+00:00")
    assert isinstance(parsed, datetime) and parsed.utcoffset().total_seconds() == 0
    assert celery_private.maybe_iso8601(None) is None
    assert celery_private.saferepr({"k": "v"}, 1024) == "{'k': 'v'}"
    assert len(celery_private.saferepr("x" * 5000, 1024)) < 1100  # cut, as argsrepr is


def test_the_exceptions_and_names_we_take_from_celery_and_billiard_are_still_theirs():
    import celery.exceptions
    from celery.utils.imports import symbol_by_name

    for name in ("WorkerLostError", "Terminated", "TimeLimitExceeded"):
        assert getattr(celery_private, name) is getattr(celery.exceptions, name), name
    assert symbol_by_name(celery_private.TASKS_STEP).__name__ == "Tasks"
    assert celery_private.signum("TERM") == celery_private.signum("SIGTERM") == 15
    assert callable(celery_private.AMQP.as_task_v2)


def test_the_worker_internals_load_only_when_asked_for():
    import subprocess
    import sys

    code = (
        "import sys, tasks.celery_private as p\n"
        "assert 'celery.worker.consumer' not in sys.modules\n"
        "assert p.Consumer.__name__ == 'Consumer'\n"
        "assert 'celery.worker.consumer' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# Modules of celery, kombu and billiard whose names code outside the adapter may import: the
# documented API a Celery application is written with.
PUBLIC_MODULES = {
    "celery",
    "celery.signals",
    "celery.states",
    "celery.exceptions",
    "celery.result",
    "celery.canvas",
    "celery.app.control",
    "celery.backends.base",
    "kombu",
    "kombu.utils.json",
    "kombu.utils.uuid",
    "kombu.transport.SQS",
}
# Attributes of their objects that are not API: read or written through the adapter only.
PRIVATE_ATTRIBUTES = {
    "_request_dict",
    "_get_current_object",
    "_context",
    "_message",
    "_pool",
    "_loop_thread",
    "_active_queues",
    "qos",
    "prefetch_count",
    "can_consume_max_estimate",
    "canonical_queue_name",
    "asynsqs",
    "hub",
}


def private_uses(path) -> list[str]:
    """What this module takes from celery/kombu/billiard that is not their public API."""
    import ast

    tree = ast.parse(path.read_text())
    inherited = {name for _, name, _ in celery_private.OVERRIDDEN if name.startswith("_")}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module.split(".")[0] not in ("celery", "kombu", "billiard"):
                    continue
                named = (
                    {f"{module}.{a.name}" for a in node.names}
                    if isinstance(node, ast.ImportFrom)
                    else set()
                )
                if module not in PUBLIC_MODULES and not (named and named <= PUBLIC_MODULES):
                    found.append(f"line {node.lineno}: imports {module}")
                if isinstance(node, ast.ImportFrom):
                    found += [
                        f"line {node.lineno}: imports {module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_")
                    ]
        elif isinstance(node, ast.Attribute):
            if node.attr in PRIVATE_ATTRIBUTES:
                found.append(f"line {node.lineno}: .{node.attr}")
            elif node.attr in inherited:
                # A subclass may call what it overrides (a contract of OVERRIDDEN) on itself.
                owner = node.value
                on_self = isinstance(owner, ast.Name) and owner.id == "self"
                on_super = (
                    isinstance(owner, ast.Call)
                    and isinstance(owner.func, ast.Name)
                    and owner.func.id == "super"
                )
                if not (on_self or on_super):
                    found.append(f"line {node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(
                ("celery.worker", "celery.app.", "kombu.transport.", "billiard.")
            )
        ):
            found.append(f"line {node.lineno}: names {node.value}")  # a string import path
    return found


def test_no_module_but_the_adapter_takes_private_names_of_celery_kombu_or_billiard():
    import pathlib

    root = pathlib.Path(celery_private.__file__).parent
    offenders = {}
    for path in sorted(root.rglob("*.py")):
        if path.name == "celery_private.py" and path.parent == root:
            continue
        uses = private_uses(path)
        if uses:
            offenders[str(path.relative_to(root.parent))] = uses
    assert offenders == {}


def test_the_scan_sees_each_kind_of_private_use(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from celery.worker.request import Request\n"
        "from kombu.transport.virtual import _private\n"
        "x = channel.qos.prefetch_count\n"
        "y = request._request_dict\n"
        "z = channel._new_queue('q')\n"
        "ok = super()._new_queue('q'), self._new_queue('q')\n"
        "step = 'celery.worker.consumer.tasks:Tasks'\n"
    )
    found = private_uses(sample)
    assert [f.split(":")[0] for f in found].count("line 1") == 1
    assert any("kombu.transport.virtual._private" in f for f in found)
    assert {f for f in found if f.startswith("line 3")} == {
        "line 3: .qos",
        "line 3: .prefetch_count",
    }
    assert "line 4: ._request_dict" in found and "line 5: ._new_queue" in found
    assert not any(f.startswith("line 6") for f in found)
    assert any(f.startswith("line 7") for f in found)
