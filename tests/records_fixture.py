"""Reading a job record in unit tests of the state machine (fixture `records` in conftest)."""

from __future__ import annotations

from tasks.results.records import JobRecords


def item(records: JobRecords, job_id: str) -> dict:
    return records.client.get_item(
        TableName="jobs", Key={"job_id": {"S": job_id}}, ConsistentRead=True
    ).get("Item", {})
