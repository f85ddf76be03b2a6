"""The DynamoDB job backend against moto in process."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError

from tasks import app
from tasks.ops.provision import ensure_table
from tasks.results.backend import MAX_RESULT_BYTES, DynamoDBJobBackend


@pytest.fixture
def backend(in_process_aws) -> DynamoDBJobBackend:
    backend = DynamoDBJobBackend(app)
    ensure_table(backend.client, backend.table)
    return backend


@pytest.fixture
def calls(backend) -> list[tuple[str, dict]]:
    """Every DynamoDB API call the backend makes, with its parameters."""
    seen: list[tuple[str, dict]] = []

    def record(event_name, params, **_):
        seen.append((event_name.rsplit(".", 1)[-1], params))

    backend.client.meta.events.register("provide-client-params.dynamodb.*", record)
    yield seen
    backend.client.meta.events.unregister("provide-client-params.dynamodb.*", record)


def request(**facts) -> SimpleNamespace:
    base = dict(
        task="tasks.text.analyze",
        delivery_count=1,
        retries=0,
        hostname="w1@host",
        argsrepr="()",
        kwargsrepr="{'text': 'hi'}",
        delivery_info={"routing_key": "jobs"},
        parent_id=None,
        root_id="r1",
        group=None,
    )
    base.update(facts)
    return SimpleNamespace(**base)


def item(backend, job_id: str) -> dict:
    return backend.client.get_item(
        TableName=backend.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )["Item"]


def test_success_record_is_readable_without_python(backend):
    backend.store_result("j1", {"pid": 1, "hostname": "w1@host"}, states.STARTED, request=request())
    backend.store_result("j1", {"words": 3, "text": 'héllo "q"'}, states.SUCCESS, request=request())
    record = item(backend, "j1")
    assert record["status"] == {"S": "SUCCESS"}
    assert json.loads(record["result"]["S"]) == {"words": 3, "text": 'héllo "q"'}
    assert record["task"] == {"S": "tasks.text.analyze"}
    assert record["attempts"] == {"N": "1"}
    assert record["worker"] == {"S": "w1@host"}
    assert record["queue"] == {"S": "jobs"}
    assert record["kwargs"] == {"S": "{'text': 'hi'}"}
    assert record["root_id"] == {"S": "r1"}
    for stamp in ("created_at", "started_at", "finished_at", "updated_at"):
        assert record[stamp]["S"].endswith("Z"), stamp
    assert record["started_at"]["S"] <= record["finished_at"]["S"]
    expires_at = int(record["expires_at"]["N"])
    assert abs(expires_at - (time.time() + backend.expires_seconds)) < 60


def test_each_state_write_is_one_conditional_update_and_no_read(backend, calls):
    backend.store_result("j2", None, states.STARTED, request=request())
    backend.store_result("j2", 5, states.SUCCESS, request=request())
    assert [name for name, _ in calls] == ["UpdateItem", "UpdateItem"]
    for _, params in calls:
        assert "attribute_not_exists(#status)" in params["ConditionExpression"]
        assert ":success" in params["ExpressionAttributeValues"]


def test_redelivery_never_turns_success_back_into_started(backend):
    backend.store_result("j3", 42, states.SUCCESS, request=request())
    backend.store_result("j3", None, states.STARTED, request=request(delivery_count=2))
    backend.store_result("j3", {"current": 1, "total": 2}, "PROGRESS", request=request())
    record = item(backend, "j3")
    assert record["status"] == {"S": "SUCCESS"}
    assert record["result"] == {"S": "42"}
    assert record["attempts"] == {"N": "1"}
    assert "progress" not in record


def test_two_workers_finishing_the_same_job_leave_the_first_record(backend):
    backend.store_result("j4", "first", states.SUCCESS, request=request(hostname="a@h"))
    backend.store_result(
        "j4", RuntimeError("late"), states.FAILURE, request=request(hostname="b@h")
    )
    backend.store_result("j4", "second", states.SUCCESS, request=request(hostname="b@h"))
    record = item(backend, "j4")
    assert (record["status"]["S"], record["result"]["S"], record["worker"]["S"]) == (
        "SUCCESS",
        '"first"',
        "a@h",
    )
    assert "error" not in record


def test_failure_keeps_error_and_traceback_and_reads_back_as_exception(backend):
    try:
        raise ValueError("bad input: text is empty")
    except ValueError as exc:
        backend.store_result(
            "j5", exc, states.FAILURE, traceback="Traceback: ...ValueError", request=request()
        )
    record = item(backend, "j5")
    assert record["error"]["M"]["type"] == {"S": "ValueError"}
    # A job's own exception may quote its arguments: the record's `message` (what HTTP
    # shows) stays empty, and `args` keeps it for AsyncResult (tasks.results.public_errors).
    assert record["error"]["M"]["message"] == {"S": ""}
    assert json.loads(record["error"]["M"]["args"]["S"]) == ["bad input: text is empty"]
    assert record["traceback"]["S"].endswith("ValueError")
    result = app.AsyncResult("j5", backend=backend)
    assert result.status == states.FAILURE
    assert isinstance(result.result, ValueError)
    assert str(result.result) == "bad input: text is empty"
    assert result.traceback == "Traceback: ...ValueError"


def test_progress_is_json_and_is_the_info_of_a_running_job(backend):
    backend.store_result("j6", None, states.STARTED, request=request())
    meta = {"current": 3, "total": 10, "message": "read 3 of 10"}
    backend.store_result("j6", meta, "PROGRESS", request=request())
    assert json.loads(item(backend, "j6")["progress"]["S"]) == meta
    result = app.AsyncResult("j6", backend=backend)
    assert result.state == "PROGRESS"
    assert result.info == meta


def test_reads_are_strongly_consistent(backend, calls):
    backend.get_task_meta("nope", cache=False)
    name, params = calls[-1]
    assert name == "GetItem" and params["ConsistentRead"] is True


def test_unknown_job_is_pending(backend):
    assert app.AsyncResult("never-submitted", backend=backend).status == states.PENDING


def test_too_large_result_fails_the_job_with_a_clear_error(backend):
    backend.store_result("j7", "x" * (MAX_RESULT_BYTES + 10), states.SUCCESS, request=request())
    record = item(backend, "j7")
    assert record["status"] == {"S": "FAILURE"}
    assert record["error"]["M"]["type"] == {"S": "ResultTooLarge"}
    assert "400 KB" in record["error"]["M"]["message"]["S"]
    assert "result" not in record


@pytest.mark.parametrize("value", [object(), float("inf"), {"x": float("nan")}])
def test_result_that_is_not_json_fails_the_job(backend, value):
    backend.store_result("j8", value, states.SUCCESS, request=request())
    record = item(backend, "j8")
    assert record["error"]["M"]["type"] == {"S": "ResultNotSerializable"}
    backend.forget("j8")


def test_success_after_retry_clears_the_retry_error(backend):
    backend.store_result("j9", RuntimeError("not yet"), states.RETRY, request=request())
    assert item(backend, "j9")["status"] == {"S": "RETRY"}
    backend.store_result("j9", 1, states.SUCCESS, request=request(retries=1, delivery_count=2))
    record = item(backend, "j9")
    assert "error" not in record and record["retries"] == {"N": "1"}


def test_get_many_uses_batch_get_item_in_pages_of_100(backend, calls):
    ids = [f"m{i}" for i in range(150)]
    for job_id in ids:
        backend.store_result(job_id, job_id.upper(), states.SUCCESS, request=request())
    calls.clear()
    got = dict(backend.get_many(ids, timeout=5))
    assert {k: v["result"] for k, v in got.items()} == {i: i.upper() for i in ids}
    assert [name for name, _ in calls] == ["BatchGetItem", "BatchGetItem"]
    assert all(p["RequestItems"][backend.table]["ConsistentRead"] for _, p in calls)


def test_get_many_times_out_on_unfinished_jobs(backend):
    # Celery's own TimeoutError, as its backends raise (tests/test_celery_compat.py).
    backend.store_result("slow", None, states.STARTED, request=request())
    with pytest.raises(CeleryTimeoutError):
        list(backend.get_many(["slow"], timeout=0.3, interval=0.1))


def test_forget_deletes_the_record(backend):
    backend.store_result("j10", 1, states.SUCCESS, request=request())
    backend.forget("j10")
    assert app.AsyncResult("j10", backend=backend).status == states.PENDING


def test_group_save_and_restore(backend):
    group = app.GroupResult("g1", [app.AsyncResult("a"), app.AsyncResult("b")])
    backend.save_group("g1", group)
    restored = backend.restore_group("g1", cache=False)
    assert [r.id for r in restored.results] == ["a", "b"]


def test_chord_body_is_claimed_once_until_its_lease_lapses(backend, monkeypatch):
    backend.save_group("g2", app.GroupResult("g2", [app.AsyncResult("a")]))
    assert backend.records.claim_chord("g2", 60, "t1") is True
    assert backend.records.claim_chord("g2", 60, "t1") is True  # its own claim, sent again
    assert backend.records.claim_chord("g2", 60, "t2") is False
    # The claimer crashed before sending the body: once the lease lapses another may send it.
    later = time.time() + 61
    monkeypatch.setattr("tasks.results.groups.time.time", lambda: later)
    assert backend.records.claim_chord("g2", 60, "t3") is True
    backend.records.mark_chord_fired("g2")
    monkeypatch.setattr("tasks.results.groups.time.time", lambda: later + 3600)
    assert backend.records.claim_chord("g2", 60, "t3") is False  # fired: never again
