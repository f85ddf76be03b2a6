"""The job-record state machine (tasks.results.records) against moto in process.

Each test is a transition of docs/job-record.md's table, enforced by the write's condition.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from celery import states

from tasks.results.job_item import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS
from tasks.results.records import JobRecords
from tests.records_fixture import item


def status(records: JobRecords, job_id: str) -> str | None:
    return item(records, job_id).get("status", {}).get("S")


ERROR = {"type": "RuntimeError", "message": "boom", "module": "builtins", "args": '["boom"]'}


def test_a_terminal_state_is_never_written_again(records):
    assert records.transition("j1", states.STARTED)
    assert records.transition("j1", states.SUCCESS, result_text="5")
    for later in (states.STARTED, states.RETRY, states.FAILURE, states.REVOKED, "PROGRESS"):
        assert records.transition("j1", later, error=ERROR) is False
    assert status(records, "j1") == states.SUCCESS
    assert item(records, "j1")["result"]["S"] == "5"


def test_the_gate_records_retry_until_the_last_receive_then_failure(records):
    assert records.reject_message("j2", "unknown task 'x'", final=False, facts={"attempts": 1})
    record = item(records, "j2")
    assert record["status"]["S"] == states.RETRY and "rejected" in record
    assert "will be received again" in record["error"]["M"]["message"]["S"]
    assert records.reject_message("j2", "unknown task 'x'", final=True, facts={"attempts": 3})
    assert status(records, "j2") == states.FAILURE
    assert item(records, "j2")["error"]["M"]["type"]["S"] == "PoisonMessage"


def test_a_worker_that_runs_the_job_after_a_rejection_wins(records):
    # Rolling deploy: an old worker did not know the task, a new one does.
    records.reject_message("j3", "unknown task", final=False)
    assert records.transition("j3", states.STARTED, facts={"worker": "new@host"})
    assert "rejected" not in item(records, "j3")
    # From now on the gate may not touch it, not even on a last receive.
    assert records.reject_message("j3", "unknown task", final=True) is False
    assert records.transition("j3", states.SUCCESS, result_text="1")
    assert status(records, "j3") == states.SUCCESS


@pytest.mark.parametrize("state", [states.STARTED, states.RETRY, states.SUCCESS])
def test_a_forged_message_cannot_change_a_real_jobs_record(records, state):
    records.transition("j4", state, result_text="1", error=ERROR)
    assert records.reject_message("j4", "forged", final=True) is False
    assert status(records, "j4") == state


def test_errors_and_tracebacks_are_truncated(records):
    records.transition(
        "j5", states.FAILURE, error={**ERROR, "message": "m" * 50_000}, traceback="t" * 50_000
    )
    record = item(records, "j5")
    assert len(record["error"]["M"]["message"]["S"]) == MAX_ERROR_CHARS
    assert len(record["traceback"]["S"]) == MAX_TRACEBACK_CHARS


def _refuse_update(records: JobRecords, message: str) -> Stubber:
    stubber = Stubber(records.client)
    stubber.add_client_error("update_item", "ValidationException", message)
    return stubber


def test_the_too_large_fallback_is_taken_for_the_item_size_refusal(records, monkeypatch):
    # DynamoDB's own words for an item over 400 KB (moto accepts any size).
    real = records.client
    original = real.update_item
    calls = []

    def update_item(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationException",
                        "Message": "Item size has exceeded the maximum allowed size",
                    }
                },
                "UpdateItem",
            )
        return original(**kwargs)

    monkeypatch.setattr(real, "update_item", update_item)
    assert records.transition("j6", states.SUCCESS, result_text='"' + "x" * 10 + '"')
    record = item(records, "j6")
    assert record["status"]["S"] == states.FAILURE
    assert record["error"]["M"]["type"]["S"] == "ResultTooLarge"


def test_any_other_validation_error_is_raised_not_disguised(records):
    with _refuse_update(records, "ExpressionAttributeNames contains invalid key") as stubber:
        with pytest.raises(ClientError):
            records.transition("j7", states.SUCCESS, result_text="1")
        stubber.assert_no_pending_responses()


def test_a_lease_is_held_once_released_on_error_and_reclaimed_after_a_crash(records, monkeypatch):
    assert records.claim_lease("k", 60, "t1")
    busy = records.claim_lease("k", 60, "t2")  # someone holds it, not done
    assert not busy and not busy.done and busy.until is not None
    assert not records.release_lease("k", "t2")  # only the holder's own claim is released
    assert records.release_lease("k", "t1")  # their effect failed: the next may run it
    assert records.claim_lease("k", 60, "t3")
    # The holder crashed (no release, no finish): once the lease lapses it can be claimed.
    later = __import__("time").time() + 61
    monkeypatch.setattr("tasks.results.leases.time.time", lambda: later)
    assert records.claim_lease("k", 60, "t4")
    records.finish_lease("k")
    monkeypatch.setattr("tasks.results.leases.time.time", lambda: later + 10_000)
    done = records.claim_lease("k", 60, "t5")
    assert not done and done.done  # done is done, however late


def test_a_claim_is_taken_over_by_a_later_run_of_the_same_job_only(records):
    assert records.claim_lease("k", 600, "t1", job_id="j", run="m1:1")
    # Another job's claim waits for the lease; the same job's next run takes it over.
    assert not records.claim_lease("k", 600, "t2", job_id="other", run="m9:1")
    assert not records.claim_lease("k", 600, "t3", job_id="j", run="m1:1")
    assert records.claim_lease("k", 600, "t4", job_id="j", run="m1:2")


def test_a_claim_applied_but_answered_with_an_error_is_still_the_callers(records):
    """DynamoDB: a 500 or a timeout "may or may not" have applied the write; botocore then
    sends the same request again. The caller's own token makes the repeat succeed."""
    assert records.claim_lease("k", 600, "t1")
    assert records.claim_lease("k", 600, "t1")  # the same request again
    assert not records.claim_lease("k", 600, "t2")
