"""Contract tests for tasks.worker.celery_private: every private name we rely on still exists.

An upgrade of celery, kombu or billiard that renames, removes or re-signs one of these fails
here, by name, instead of silently in a worker.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.worker import state as worker_state
from kombu.asynchronous import Hub

from tasks.worker import celery_private


@pytest.mark.parametrize(("cls", "name", "expected"), celery_private.OVERRIDDEN,
                         ids=[f"{c.__name__}.{n}" for c, n, _ in celery_private.OVERRIDDEN])
def test_each_method_we_override_or_call_exists_with_the_parameters_we_pass(cls, name,
                                                                           expected):
    assert callable(getattr(cls, name, None)), f"{cls.__module__}.{cls.__name__}.{name} is gone"
    actual = celery_private.parameters(cls, name)
    assert actual[:len(expected)] == expected, (
        f"{cls.__name__}.{name}{actual}: we rely on {expected}")


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
        worker_state.active_requests or worker_state.reserved_requests)


def test_a_request_keeps_its_message_dict_and_context_where_we_read_them():
    from tasks import app

    message = SimpleNamespace(
        headers={"id": "r1", "task": "tasks.debug.add", "timelimit": [None, None]},
        body=b'[[], {"x": 1, "y": 2}, {}]', content_type="application/json",
        content_encoding="utf-8", payload=([], {"x": 1, "y": 2}, {}), delivery_info={},
        properties={}, decode=lambda: ([], {"x": 1, "y": 2}, {}))
    request = celery_private.Request(message, app=app, task=app.tasks["tasks.debug.add"])
    assert celery_private.request_message(request) is message
    assert celery_private.request_dict(request)["id"] == "r1"
    assert celery_private.request_context(request).id == "r1"
    assert celery_private.delivery_count(request) is None
    celery_private.request_dict(request)["delivery_count"] = 2
    assert celery_private.delivery_count(request) == 2


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
    with Connection("sqs://", transport=Transport, transport_options={
            "region": "us-east-1", "predefined_queues": {"contract": {"url": url}}}) as conn:
        channel = conn.channel()
        assert celery_private.channel_queue_url(channel, "contract") == url
        assert celery_private.channel_is_consuming(channel, "contract") is False
        assert hasattr(channel.qos, "can_consume_max_estimate")
        assert hasattr(channel.qos, "prefetch_count")
        channel.close()


def test_no_other_module_imports_celery_worker_internals():
    # The adapter is the one place: the rest of tasks/worker uses its names.
    import pathlib

    root = pathlib.Path(celery_private.__file__).parent
    offenders = []
    for path in root.glob("*.py"):
        if path.name == "celery_private.py":
            continue
        text = path.read_text()
        for needle in ("celery.worker.state", "worker_state.", "._request_dict", "._pool",
                       "._loop_thread", "celery.worker.request import", "._context"):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []
