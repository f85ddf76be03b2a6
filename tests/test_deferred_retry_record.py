"""A retry deferred to a schedule (tasks.worker.deferral, JobRecords.mark_scheduled): its
record says SCHEDULED with the waiting message's `retries`, and the attempt that retried
holds the job no longer.

Celery's tasks guide: `self.retry(countdown=...)` sends a new message with the same id and
`retries` + 1; the retried run is the job's next attempt. Our guarantees (docs/guarantees.md,
"One execution per job id"): a retry starts from the run that sent it, and `retries` never
goes down.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery import states

TASK = "tests.deferral_jobs.retry_later"


def start(records, job_id: str, token: str, retries: int, retry_of: str | None = None) -> bool:
    facts = {"task": TASK, "run_token": token, "retries": retries}
    if retry_of:
        facts["retry_of"] = retry_of
    return records.transition(job_id, states.STARTED, facts=facts)


def item(records, job_id: str) -> dict:
    return records.client.get_item(
        TableName=records.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )["Item"]


def test_a_deferred_retry_is_scheduled_with_its_retries_and_starts_when_fired(records):
    job = "0b1c2d3e-retry-deferred"
    eta = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert start(records, job, "first:1", 0)
    assert records.transition(
        job, states.RETRY, facts={"task": TASK, "run_token": "first:1", "retries": 0}
    )
    # The retry's message (retries 1) is received at once and deferred.
    assert records.mark_scheduled(job, task=TASK, eta=eta, schedule=f"job-{job}-1", retries=1)
    record = item(records, job)
    assert record["status"]["S"] == "SCHEDULED" and record["retries"]["N"] == "1"
    assert "run_lease" not in record  # no run holds a job that waits
    # A stale copy of the first attempt neither starts nor is deferred: retries never go down.
    assert not start(records, job, "stale:1", 0)
    assert not records.mark_scheduled(job, task=TASK, eta=eta, schedule=f"job-{job}-0", retries=0)
    assert item(records, job)["status"]["S"] == "SCHEDULED"
    # Fired (here within the first attempt's lease): the retry starts, as attempt 1.
    assert start(records, job, "fired:1", 1, retry_of="first:1")
    record = item(records, job)
    assert record["status"]["S"] == states.STARTED and record["run_token"]["S"] == "fired:1"
    assert record["retries"]["N"] == "1"
