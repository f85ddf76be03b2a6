"""A job waiting for its eta (issue 20, item 3): the SCHEDULED record, AsyncResult, revoke.

The oracles: Celery's states (celery.states: READY_STATES is SUCCESS, FAILURE, REVOKED;
`AsyncResult.ready()` is "state in READY_STATES"; a state Celery does not know ranks as a
custom state in `precedence`), Celery's revoke ("it will not be executed when received"),
and the transition table (tasks.results.transitions, docs/job-record.md). The schedule is
EventBridge Scheduler's, on moto: DeleteSchedule, then GetSchedule answers
ResourceNotFoundException.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from tasks.results.transitions import NONE, REJECTED, SCHEDULED, allowed
from tests.records_fixture import item
from tests.test_record_model import model_env  # noqa: F401  (fixture)
from tests.test_templates import velocity  # noqa: F401  (fixture)

ETA = "2036-12-06T20:00:00+00:00"


def schedule(records, job_id: str, eta: str = ETA) -> bool:
    return records.mark_scheduled(
        job_id, task="tasks.debug.add", eta=eta, schedule=f"job-{job_id}-0"
    )


def test_a_deferred_job_is_recorded_scheduled_with_its_eta_and_listed(records):
    job_id = str(uuid.uuid4())
    assert schedule(records, job_id) is True
    record = item(records, job_id)
    assert record["status"]["S"] == SCHEDULED
    assert record["eta"]["S"] == ETA
    assert record["schedule"]["S"] == f"job-{job_id}-0"
    assert record["task"]["S"] == "tasks.debug.add"
    # Listed at once, under the key rule of the listing index.
    assert record["list_pk"]["S"] == records.index_keys.on_write(SCHEDULED, job_id)


def test_the_record_outlives_a_wait_of_ten_years(records):
    """The TTL counts from the eta: a record expiring after result_expires (here 3600 s)
    from now would vanish while its job waits, and GET would answer PENDING."""
    eta = datetime.now(UTC) + timedelta(days=3650)
    assert schedule(records, "far", eta.isoformat()) is True
    expires = int(item(records, "far")["expires_at"]["N"])
    assert expires >= int(eta.timestamp()) + 3600


def put_state(records, job_id: str, state: str) -> None:
    """Bring a record to `state` through the record's own writes."""
    facts = {"run_token": "m:1", "retries": 0}
    if state == REJECTED:
        assert records.reject_message(job_id, "bad", final=False)
    elif state == states.RETRY:
        assert records.transition(job_id, states.STARTED, facts=facts)
        assert records.transition(job_id, states.RETRY, facts=facts, error={"type": "X"})
    elif state == SCHEDULED:
        assert schedule(records, job_id)
    elif state in (states.STARTED, "PROGRESS"):
        assert records.transition(job_id, states.STARTED, facts=facts)
        if state == "PROGRESS":
            assert records.transition(job_id, "PROGRESS", progress_text="{}")
    elif state == states.REVOKED:
        assert records.revoke(job_id).revoked
    elif state != NONE:
        assert records.transition(job_id, state, result_text="1")


@pytest.mark.parametrize(
    "state, allowed_here",
    [
        (NONE, True),
        (REJECTED, True),
        (states.RETRY, True),
        (SCHEDULED, True),  # a duplicate message: the same write again
        (states.STARTED, False),
        ("PROGRESS", False),
        (states.SUCCESS, False),
        (states.FAILURE, False),
        (states.REVOKED, False),
    ],
)
def test_scheduled_is_written_only_where_the_table_allows(records, state, allowed_here):
    job_id = str(uuid.uuid4())
    put_state(records, job_id, state)
    before = item(records, job_id)
    assert allowed("schedule", state) is allowed_here  # the table says what the brief says
    assert schedule(records, job_id) is allowed_here
    after = item(records, job_id)
    if allowed_here:
        assert after["status"]["S"] == SCHEDULED and "rejected" not in after
        assert "error" not in after  # a retry's exception is not this state's
    else:
        assert after == before  # refused: nothing written


def test_a_scheduled_job_starts_when_its_schedule_fires(records):
    job_id = str(uuid.uuid4())
    assert schedule(records, job_id)
    assert records.transition(job_id, states.STARTED, facts={"run_token": "fired:1"})
    record = item(records, job_id)
    assert record["status"]["S"] == states.STARTED
    assert record["eta"]["S"] == ETA  # when it was due stays on the record


@pytest.fixture
def backend(in_process_aws, monkeypatch):
    """The app's result backend on moto in process (also app.backend, for app.control)."""
    from tasks import app
    from tasks.ops.provision import ensure_table
    from tasks.results.backend import DynamoDBJobBackend

    made = DynamoDBJobBackend(app)
    ensure_table(made.client, made.table)
    monkeypatch.setattr(type(app), "backend", property(lambda self: made))
    return made


def test_async_result_reads_scheduled_and_it_is_not_ready(backend):
    from tasks import app

    job_id = str(uuid.uuid4())
    assert schedule(backend.records, job_id)
    result = AsyncResult(job_id, app=app)
    assert result.state == result.status == SCHEDULED
    # Celery knows nothing of SCHEDULED: not ready, not done, ranked as a custom state.
    assert SCHEDULED not in states.READY_STATES
    assert states.precedence(SCHEDULED) == states.precedence("PROGRESS")
    assert (result.ready(), result.successful(), result.failed()) == (False, False, False)
    started = time.monotonic()
    with pytest.raises(CeleryTimeout):
        result.get(timeout=0.3, interval=0.1)
    assert time.monotonic() - started < 5


def make_schedule(settings, name: str) -> None:
    from tasks.ops import one_time_schedules
    from tasks.ops.clients import scheduler_client

    one_time_schedules.ensure_group(settings)
    scheduler_client(settings).create_schedule(
        Name=name,
        GroupName=settings.schedule_group,
        ScheduleExpression="at(2036-12-06T20:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": "arn:aws:sqs:us-east-1:123456789012:jobs",
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "Input": "e30=",
        },
    )


def schedule_exists(settings, name: str) -> bool:
    from tasks.ops.clients import scheduler_client

    try:
        scheduler_client(settings).get_schedule(GroupName=settings.schedule_group, Name=name)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False
    return True


def test_revoke_of_a_scheduled_job_deletes_its_schedule_and_it_never_runs(backend):
    from tasks import app

    job_id = str(uuid.uuid4())
    name = f"job-{job_id}-0"
    make_schedule(backend.settings, name)
    assert schedule(backend.records, job_id)
    assert AsyncResult(job_id, app=app).revoke() is None  # Celery's returns nothing
    assert backend.records.read(job_id)["status"]["S"] == states.REVOKED
    assert not schedule_exists(backend.settings, name)
    # Had it fired already: its run's STARTED write is refused, the job is dropped.
    assert not backend.records.transition(job_id, states.STARTED, facts={"run_token": "f:1"})
    assert AsyncResult(job_id, app=app).state == states.REVOKED


def test_a_revoke_holds_when_the_schedule_is_gone_or_cannot_be_deleted(backend, monkeypatch):
    from tasks import app
    from tasks.ops import one_time_schedules

    fired = str(uuid.uuid4())  # its schedule fired and deleted itself (ActionAfterCompletion)
    assert schedule(backend.records, fired)
    outcome = app.control.revoke(fired)
    assert (outcome.revoked, outcome.previous, outcome.schedule) == (
        True,
        SCHEDULED,
        f"job-{fired}-0",
    )

    def unreachable(settings, name, **_):
        raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "DeleteSchedule")

    monkeypatch.setattr(one_time_schedules, "cancel", unreachable)
    stuck = str(uuid.uuid4())
    assert schedule(backend.records, stuck)
    assert app.control.revoke(stuck).status == states.REVOKED  # logged, not raised
    # A job that was never scheduled asks nothing of the scheduler.
    assert app.control.revoke(str(uuid.uuid4())).schedule is None


SCHEDULED_ITEM = {
    "job_id": {"S": "3fa85f64-5717-4562-b3fc-2c963f66afa6"},
    "status": {"S": SCHEDULED},
    "task": {"S": "tasks.debug.add"},
    "eta": {"S": ETA},
    "schedule": {"S": "job-3fa85f64-5717-4562-b3fc-2c963f66afa6-0"},
    "created_at": {"S": "2026-12-06T18:00:00.000Z"},
}


def test_get_job_shows_when_a_scheduled_job_will_run(velocity):  # noqa: F811
    """GET /jobs/{id} (and the DELETE answer, its twin) shows `eta`, on our renderer and on
    Apache Velocity alike; the schedule's name stays internal."""
    import json

    from tests.test_templates import JOB_ID, get_response_template, render_get_response

    ours = render_get_response(SCHEDULED_ITEM)
    shown = json.loads(ours.text)
    assert (shown["status"], shown["eta"]) == (SCHEDULED, ETA)
    assert "schedule" not in shown
    body = json.dumps({"Item": SCHEDULED_ITEM})
    assert velocity(get_response_template(), body, "r", job_id=JOB_ID) == ours.text


# --- scripted walks through the record model (tests/test_record_model.py), whose invariants
# (never before the eta, a revoked job never starts, SCHEDULED only along the table) are
# checked after every step ----------------------------------------------------------------
@pytest.fixture
def model(model_env):  # noqa: F811
    from tests.test_record_model import JobModel

    JobModel.env = model_env
    return JobModel()


def test_a_deferred_job_runs_when_its_schedule_fires_and_not_before(model):
    from tests.test_record_counterexamples import replay

    replay(
        model,
        [
            lambda m: m.new_job(copies=2, deferred=True),
            lambda m: m.deliver(data=0),  # deferred: SCHEDULED
            lambda m: m.deliver(data=0),  # its copy: the same write again
            lambda m: m.tick(seconds=1),
            lambda m: m.schedule_fires(),
            lambda m: m.deliver(data=0),
            lambda m: m.work(data=0, outcome="small", crash="no"),
        ],
    )
    assert model.terminal is not None and model.terminal.status == states.SUCCESS


def test_a_job_revoked_while_scheduled_never_runs_when_its_schedule_fires(model):
    from tests.test_record_counterexamples import replay

    replay(
        model,
        [
            lambda m: m.new_job(copies=1, deferred=True),
            lambda m: m.deliver(data=0),
            lambda m: m.revoke(),
            lambda m: m.schedule_fires(),
            lambda m: m.deliver(data=0),  # refused: "a revoked job started" otherwise
        ],
    )
    assert not model.runs and model.terminal.status == states.REVOKED
