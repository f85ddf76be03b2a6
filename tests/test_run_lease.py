"""The run lease (tasks.results.run_lease): one run of a job id at a time, none once finished.

Units on moto in process: every rule of the STARTED condition, the RETRY release, the
renewal and the terminal removal, each write one conditional UpdateItem.
"""

from __future__ import annotations

import time

import pytest
from celery import states
from celery.exceptions import Ignore

from tasks.results.backend import DynamoDBJobBackend
from tasks.results.run_lease import (
    describe,
    duplicate_noted,
    earlier_tokens,
    note_duplicate,
    run_token,
)

JOB = "5b6c2a1e-0000-4000-8000-00000000beef"


def start(
    records,
    token: str,
    retries: int = 0,
    worker: str = "w1@h",
    refusal=None,
    retry_of: str | None = None,
) -> bool:
    facts = {
        "task": "tests.jobs.append_line",
        "run_token": token,
        "retries": retries,
        "attempts": 1,
        "worker": worker,
        "retry_of": retry_of,
    }
    return records.transition(JOB, states.STARTED, facts=facts, refusal=refusal)


def item(records) -> dict:
    return records.client.get_item(
        TableName=records.table, Key={"job_id": {"S": JOB}}, ConsistentRead=True
    )["Item"]


def test_tokens_name_the_message_and_its_receive():
    assert run_token("m-1", 3) == "m-1:3"
    assert run_token(None, 3).startswith("run-") and run_token(None, 3) != run_token(None, 3)
    assert earlier_tokens("m-1:3") == ["m-1:2", "m-1:1"]
    assert earlier_tokens("m-1:1") == [] and earlier_tokens("run-x") == []
    assert len(earlier_tokens("m:500")) == 99  # DynamoDB's IN: 100 operands at most


def test_started_takes_the_lease_and_a_second_delivery_is_refused(records):
    assert start(records, "msg-a:1")
    held = item(records)
    assert held["run_token"]["S"] == "msg-a:1"
    lease = int(held["run_lease"]["N"])
    assert (
        time.time() + records.run_lease_seconds - 5
        <= lease
        <= time.time() + records.run_lease_seconds + 1
    )
    refusal: dict = {}
    assert not start(records, "msg-b:1", worker="w2@h", refusal=refusal)
    assert describe(refusal).startswith("already running on w1@h (lease until ")
    assert item(records)["run_token"]["S"] == "msg-a:1"  # unchanged
    assert start(records, "msg-a:1")  # the holder's own write again


def test_the_same_message_received_again_takes_over(records):
    """SQS delivers a message again only after its receiver let it go: that run is gone."""
    assert start(records, "msg-a:1")
    assert start(records, "msg-a:2", worker="w2@h")
    assert item(records)["run_token"]["S"] == "msg-a:2"
    assert not start(records, "msg-a:1")  # the older receive no longer holds it


def test_an_expired_lease_lets_another_run_start(records):
    assert start(records, "msg-a:1")
    records.client.update_item(
        TableName=records.table,
        Key={"job_id": {"S": JOB}},
        UpdateExpression="SET run_lease = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    assert start(records, "msg-b:1", worker="w2@h")


def test_retry_lets_the_retried_message_start_and_still_refuses_old_duplicates(records):
    assert start(records, "msg-a:1", retries=0)
    facts = {"run_token": "msg-a:1", "retries": 0}
    assert not records.transition(
        JOB,
        states.RETRY,
        error={"type": "X", "message": "x"},
        facts={"run_token": "msg-z:1", "retries": 0},
    )  # not mine
    assert records.transition(JOB, states.RETRY, error={"type": "X", "message": "x"}, facts=facts)
    assert item(records)["run_token"]["S"] == "msg-a:1"  # left to lapse, not renewed
    assert not start(records, "msg-c:1", retries=0)  # a duplicate of the first attempt
    assert not start(records, "msg-b:1", retries=1)  # a retry another run sent
    assert start(records, "msg-b:1", retries=1, retry_of="msg-a:1")  # the holder's retry
    assert item(records)["run_token"]["S"] == "msg-b:1"


def test_a_later_retry_may_start_before_the_retry_write(records):
    """Task.retry sends the retried message before the RETRY write that releases the lease."""
    assert start(records, "msg-a:1", retries=0)
    assert start(records, "msg-b:1", retries=1, worker="w2@h", retry_of="msg-a:1")
    # A duplicate of that retry: refused, even naming the same sender.
    assert not start(records, "msg-c:1", retries=1, retry_of="msg-a:1")
    # The first run's late RETRY write cannot release the new run's lease.
    assert not records.transition(
        JOB,
        states.RETRY,
        error={"type": "X", "message": "x"},
        facts={"run_token": "msg-a:1", "retries": 0},
    )
    assert item(records)["run_token"]["S"] == "msg-b:1"


def test_a_finished_job_never_starts_again_and_keeps_no_lease(records):
    assert start(records, "msg-a:1")
    assert records.transition(JOB, states.SUCCESS, result_text="1", facts={"run_token": "msg-a:1"})
    assert "run_lease" not in item(records) and "run_token" not in item(records)
    for token in ("msg-b:1", "msg-a:2", "msg-a:1"):
        refusal: dict = {}
        assert not start(records, token, retries=3, refusal=refusal)
        assert describe(refusal) == "already SUCCESS"


def test_renewal_is_the_holders_only_while_it_runs(records):
    assert start(records, "msg-a:1")
    records.client.update_item(
        TableName=records.table,
        Key={"job_id": {"S": JOB}},
        UpdateExpression="SET run_lease = :soon",
        ExpressionAttributeValues={":soon": {"N": str(int(time.time()) + 2)}},
    )
    assert records.renew_run_lease(JOB, "msg-a:1")
    assert int(item(records)["run_lease"]["N"]) >= time.time() + records.run_lease_seconds - 5
    assert not records.renew_run_lease(JOB, "msg-b:1")
    records.transition(JOB, states.SUCCESS, result_text="1", facts={"run_token": "msg-a:1"})
    assert not records.renew_run_lease(JOB, "msg-a:1")
    assert "run_lease" not in item(records)


def test_the_backend_marks_a_refused_start_as_a_duplicate(records):
    class Request:
        run_token = "msg-b:1"
        hostname = "w2@h"
        task = "tests.jobs.append_line"
        retries = 0

    assert start(records, "msg-a:1")
    refusal: dict = {}
    facts = {"run_token": "msg-b:1", "retries": 0}
    assert not records.transition(JOB, states.STARTED, facts=facts, refusal=refusal)
    request = Request()
    DynamoDBJobBackend.note_refusal(request, refusal, starting=True)
    assert duplicate_noted(request).startswith("already running on w1@h")
    other = Request()
    DynamoDBJobBackend.note_refusal(other, refusal)  # a progress write: not a duplicate
    assert duplicate_noted(other) is None


def test_a_dropped_duplicate_tells_its_chord_only_if_the_job_finished(monkeypatch):
    """A part that finished but died before it told its chord: its message comes back and
    the dropped copy reports the part (the counter may run ahead, never behind)."""
    from tasks.debug import add

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        type(add.backend),
        "on_chord_part_return",
        lambda self, request, state, result, **kw: calls.append((request.id, state)),
    )
    for status, expected in ((states.STARTED, []), (states.SUCCESS, [(JOB, states.SUCCESS)])):
        calls.clear()
        add.push_request(id=JOB, chord={"task": "tests.jobs.echo"}, group="g-1")
        try:
            note_duplicate(add.request, {"status": {"S": status}, "worker": {"S": "w1@h"}})
            with pytest.raises(Ignore):
                add.before_start(JOB, (), {})
        finally:
            add.pop_request()
        assert calls == expected, status


def test_a_retry_never_starts_beside_a_run_that_took_the_lapsed_lease(records):
    """The model's counterexample (tests/test_record_model.py): run A retries with a long
    countdown, its lease lapses, a duplicate B of the first attempt starts; A's retry, due
    later, must not start while B runs (it used to: `retries` above the record's)."""
    assert start(records, "msg-a:1", retries=0)
    assert records.transition(
        JOB,
        states.RETRY,
        error={"type": "X", "message": "x"},
        facts={"run_token": "msg-a:1", "retries": 0},
    )
    lapse(records)
    assert start(records, "msg-dup:1", retries=0, worker="w2@h")  # the lease had lapsed
    assert not start(records, "msg-r:1", retries=1, retry_of="msg-a:1")
    assert item(records)["run_token"]["S"] == "msg-dup:1"


def test_retries_never_go_down(records):
    assert start(records, "msg-a:1", retries=0)
    assert start(records, "msg-b:1", retries=1, retry_of="msg-a:1")
    lapse(records)
    assert not start(records, "msg-old:1", retries=0)  # an earlier attempt, late
    assert item(records)["retries"]["N"] == "1"


def lapse(records) -> None:
    records.client.update_item(
        TableName=records.table,
        Key={"job_id": {"S": JOB}},
        UpdateExpression="SET run_lease = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
