"""cancel_schedule (tasks.results.control): what became of a revoked job's one-time schedule,
told once for revoke's log and the console's answer.

EventBridge Scheduler's API reference, DeleteSchedule: an empty 200 when deleted;
ResourceNotFoundException when the schedule does not exist (here: it fired and deleted itself,
ActionAfterCompletion DELETE, or was never made); any other error leaves it in place.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tasks.ops.settings import Settings
from tasks.results.control import ScheduleFate, cancel_schedule

SETTINGS = Settings(region="us-east-1", schedule_group="jobs-deferred")
NAME = "job-3fa85f64-5717-4562-b3fc-2c963f66afa6-0"
REQUEST = {"GroupName": "jobs-deferred", "Name": NAME}
LEFT = "it will fire, and the worker drops the job (its record is REVOKED)"


@pytest.fixture
def scheduler():
    return boto3.client(
        "scheduler",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.mark.parametrize(
    ("answer", "fate", "said"),
    [
        (None, ScheduleFate.DELETED, f"its schedule {NAME} deleted"),
        (
            "ResourceNotFoundException",
            ScheduleFate.FIRED,
            f"its schedule {NAME} had fired already; the job will not run (REVOKED)",
        ),
        (
            "AccessDeniedException",
            ScheduleFate.FAILED,
            f"its schedule {NAME} was not deleted (An error occurred (AccessDeniedException) "
            f"when calling the DeleteSchedule operation: no); {LEFT}",
        ),
    ],
)
def test_each_answer_of_delete_schedule_is_one_outcome(scheduler, answer, fate, said):
    with Stubber(scheduler) as stub:
        if answer is None:
            stub.add_response("delete_schedule", {}, REQUEST)
        else:
            stub.add_client_error("delete_schedule", answer, "no", expected_params=REQUEST)
        outcome = cancel_schedule(SETTINGS, NAME, scheduler=scheduler)
        stub.assert_no_pending_responses()
    assert (outcome.name, outcome.fate, str(outcome)) == (NAME, fate, said)


def test_without_settings_the_schedule_is_left_and_nothing_is_asked():
    outcome = cancel_schedule(None, NAME, scheduler=object())  # a client would fail if called
    assert outcome.fate is ScheduleFate.LEFT
    assert str(outcome) == f"its schedule {NAME} was left (this console has no scheduler); {LEFT}"
