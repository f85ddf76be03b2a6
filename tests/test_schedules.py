"""Schedules as units: expressions checked at decoration time, fire times, names, and the
scheduled message the worker's channel turns into a protocol v2 job (or refuses).

The expression grammar is EventBridge Scheduler's (rate(value unit), six-field cron in
UTC with one of day-of-month and day-of-week `?`, at(...)), minus the L, W and # that the
local scheduler does not compute; tasks/jobkit/schedules.py says which parts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.jobkit.registry import job
from tasks.jobkit.schedules import (
    Schedule,
    check_expression,
    job_id,
    parse_cron,
    schedule_name,
    scheduled_body,
)
from tasks.ops.local_scheduler import LocalScheduler, iso
from tests.envelopes import capture, receive_offline

ARN = "arn:aws:scheduler:us-east-1:123456789012:schedule/t1-schedules/tasks.debug.add-0"
FIRED = {
    "schedule": ARN,
    "scheduled_time": "2026-12-01T06:00:00Z",
    "execution_id": "d32c5kddcf5bb8c3",
    "attempt": "1",
}

# --- expressions ---------------------------------------------------------------------------

VALID = [
    "rate(1 minute)",
    "rate(5 minutes)",
    "rate(1 hour)",
    "rate(12 hours)",
    "rate(1 day)",
    "rate(7 days)",
    "cron(0 6 * * ? *)",
    "cron(0/15 * * * ? *)",
    "cron(*/10 8-17 ? * MON-FRI *)",
    "cron(30 2 1,15 * ? 2026-2030)",
    "cron(0 0 ? JAN,JUL 1 *)",
    "cron(5 4 29 2 ? *)",
    "at(2027-01-01T00:00:00)",
]
INVALID = {
    "rate(0 minutes)": "at least 1",
    "rate(1 minutes)": "singular",
    "rate(2 minute)": "plural",
    "rate(5 seconds)": "minute(s), hour(s) or day(s)",
    "rate(5  minutes)": "rate(value unit)",
    "cron(0 6 * * * *)": "exactly one of day-of-month and day-of-week",
    "cron(0 6 ? * ? *)": "exactly one of day-of-month and day-of-week",
    "cron(0 6 * * ?)": "6 fields",
    "cron(60 6 * * ? *)": "out of range 0-59",
    "cron(0 24 * * ? *)": "out of range 0-23",
    "cron(0 6 L * ? *)": "L, W and #",
    "cron(0 6 ? * 6#3 *)": "L, W and #",
    "cron(0 6 ? * FOO *)": "not a number",
    "cron(0 6 10-2 * ? *)": "runs backwards",
    "cron(0/0 6 * * ? *)": "positive",
    "cron(0 6 * * ? 1969)": "out of range 1970-2199",
    "at(2027-13-01T00:00:00)": "month",
    "every 5 minutes": "rate(...), cron(...) or at(...)",
    "rate(5 minutes)\n": "rate(value unit)",
}


@pytest.mark.parametrize("expression", VALID)
def test_expressions_eventbridge_takes_are_accepted(expression):
    assert check_expression(expression) == expression


@pytest.mark.parametrize(("expression", "says"), sorted(INVALID.items()))
def test_other_expressions_are_refused_saying_what_is_wrong(expression, says):
    with pytest.raises(ValueError, match="schedule") as caught:
        check_expression(expression)
    assert says in str(caught.value)


def _mutations(text: str):
    """One character removed, doubled or replaced: mostly invalid, sometimes valid."""
    return st.integers(0, len(text) - 1).flatmap(
        lambda i: st.sampled_from(
            [
                text[:i] + text[i + 1 :],
                text[:i] + text[i] + text[i:],
                *[text[:i] + c + text[i + 1 :] for c in "0 9?*-,/(xL#"],
            ]
        )
    )


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sampled_from(VALID).flatmap(_mutations))
def test_a_mutated_expression_is_accepted_only_if_it_still_fires(expression):
    """Whatever check_expression accepts, the local scheduler can compute (no crash, a
    next firing or a clear never), and whatever it refuses, it refuses with a ValueError
    that names the expression."""
    try:
        check_expression(expression)
    except ValueError as exc:
        assert repr(expression) in str(exc)
        return
    start = datetime(2026, 12, 1, tzinfo=UTC)
    when = Schedule(expression).next_fire(start, start)
    assert when is None or when > start


def _brute_force(expression: str, after: datetime) -> datetime:
    cron = parse_cron(expression)
    when = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not cron.matches(when):
        when += timedelta(minutes=1)
    return when


@pytest.mark.parametrize(
    "expression",
    [e for e in VALID if e.startswith("cron(") and "29 2" not in e and "JAN,JUL" not in e],
)
def test_cron_fire_times_are_the_first_matching_minute_in_utc(expression):
    after = datetime(2026, 12, 1, 5, 59, 30, tzinfo=UTC)
    cron = parse_cron(expression)
    for _ in range(3):
        nxt = cron.next_after(after)
        assert nxt == _brute_force(expression, after)
        after = nxt


def test_day_names_and_numbers_agree_with_aws_sunday_is_1():
    # 2026-12-06 is a Sunday
    assert parse_cron("cron(0 0 ? * 1 *)").next_after(
        datetime(2026, 12, 1, tzinfo=UTC)
    ) == datetime(2026, 12, 6, tzinfo=UTC)
    assert parse_cron("cron(0 0 ? * SUN *)").next_after(
        datetime(2026, 12, 1, tzinfo=UTC)
    ) == datetime(2026, 12, 6, tzinfo=UTC)
    assert parse_cron("cron(5 4 29 2 ? *)").next_after(
        datetime(2026, 12, 1, tzinfo=UTC)
    ) == datetime(2028, 2, 29, 4, 5, tzinfo=UTC)
    assert parse_cron("cron(0 0 1 1 ? 2026)").next_after(datetime(2026, 12, 1, tzinfo=UTC)) is None


def test_rates_fire_every_period_from_the_start():
    start = datetime(2026, 12, 1, 10, 0, 7, tzinfo=UTC)
    s = Schedule("rate(15 minutes)")
    assert s.next_fire(start, start) == start + timedelta(minutes=15)
    assert s.next_fire(start + timedelta(minutes=15), start) == start + timedelta(minutes=30)


# --- declaring -----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "number"}},
    "required": ["x"],
    "additionalProperties": False,
}


def test_a_job_declares_schedules_checked_against_its_schema_at_decoration():
    with pytest.raises(ValueError, match="kwargs: x: is not of type 'number'"):
        job(
            schema=SCHEMA,
            public=False,
            name="tests.sched.bad_kwargs",
            schedule=Schedule("rate(1 hour)", kwargs={"x": "a"}),
        )(lambda self, x: x)
    with pytest.raises(ValueError, match="'x' is a required property"):
        job(schema=SCHEMA, public=False, name="tests.sched.missing", schedule="rate(1 hour)")(
            lambda self, x: x
        )
    with pytest.raises(ValueError, match="rate unit"):
        job(
            schema=SCHEMA,
            public=False,
            name="tests.sched.bad_rate",
            schedule=Schedule("rate(2 weeks)", kwargs={"x": 1}),
        )(lambda self, x: x)
    with pytest.raises(ValueError, match="share a name"):
        job(
            schema=SCHEMA,
            public=False,
            name="tests.sched.twice",
            schedule=[
                Schedule("rate(1 hour)", {"x": 1}, name="same"),
                Schedule("rate(2 hours)", {"x": 2}, name="same"),
            ],
        )(lambda self, x: x)


def test_schedule_names_are_stable_and_fit_eventbridge():
    assert schedule_name("tasks.reports.daily", 0, None) == "tasks.reports.daily-0"
    assert schedule_name("tasks.reports.daily", 1, "nightly") == "nightly"
    long = schedule_name("tasks." + "x" * 80, 2, None)
    assert len(long) == 64 and long == schedule_name("tasks." + "x" * 80, 2, None)
    assert long != schedule_name("tasks." + "x" * 80, 3, None)
    with pytest.raises(ValueError, match="schedule name"):
        Schedule("rate(1 hour)", name="has space")


# --- the scheduled message at the worker's channel -----------------------------------------


def _body(**changes) -> str:
    fields = {**FIRED, **changes}
    return scheduled_body(
        "tasks.debug.add",
        changes.pop("kwargs", {"x": 1, "y": 2}),
        **{k: v for k, v in fields.items() if k != "kwargs"},
    )


@pytest.mark.integration  # a real apply_async() on moto's server
def test_a_scheduled_message_becomes_the_message_delay_would_send(stack):
    """Same headers, properties and body as a real apply_async() message of the same job,
    but for what a firing is (its id, origin, submitted_at and the schedule's headers)."""
    from tasks.debug import add

    received = receive_offline(_body())
    assert received.decode_error is None and received.verdict is None
    assert received.job_id == job_id(ARN, "2026-12-01T06:00:00Z")
    _, real_body = capture(stack, add.s(x=1, y=2).set(task_id=received.job_id))
    real = receive_offline(real_body)
    assert real.verdict is None
    ours, theirs = received.message, real.message
    assert (
        ours.decode()
        == theirs.decode()
        == [
            [],
            {"x": 1, "y": 2},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
    )
    assert (
        ours.content_type == theirs.content_type
        and ours.content_encoding == theirs.content_encoding
    )
    differs = {
        "origin",
        "submitted_at",
        "scheduled_time",
        "schedule",
        "schedule_execution",
        "schedule_attempt",
    }
    assert {k: v for k, v in ours.headers.items() if k not in differs} == {
        k: v for k, v in theirs.headers.items() if k not in differs
    }
    assert ours.headers["origin"] == "eventbridge-scheduler"
    assert ours.headers["submitted_at"] == int(
        datetime(2026, 12, 1, 6, tzinfo=UTC).timestamp() * 1000
    )
    assert (ours.headers["scheduled_time"], ours.headers["schedule"]) == (
        "2026-12-01T06:00:00Z",
        ARN,
    )
    assert set(ours.properties) >= set(theirs.properties) - {"reply_to"}


def test_every_delivery_of_one_firing_has_one_job_id_and_each_firing_its_own():
    first = receive_offline(_body(execution_id="aaaa", attempt="1"))
    retried = receive_offline(_body(execution_id="bbbb", attempt="2"))
    later = receive_offline(_body(scheduled_time="2026-12-01T06:15:00Z"))
    assert first.job_id == retried.job_id != later.job_id
    assert retried.message.headers["schedule_attempt"] == 2


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"schedule": "<aws.scheduler.schedule-arn>"}, "scheduled message.schedule"),
        ({"scheduled_time": "tomorrow"}, "scheduled message.scheduled_time"),
        ({"scheduled_time": "2026-02-30T06:00:00Z"}, "is not a date"),
        ({"attempt": 1}, "scheduled message.attempt"),
        ({"kwargs": {"bad key": 1}}, "scheduled message.kwargs"),
        ({"task": "no spaces allowed"}, "scheduled message.task"),
        ({"extra": True}, "Additional properties"),
    ],
)
def test_a_malformed_scheduled_message_is_refused_with_its_reason(changes, reason):
    fields = json.loads(_body())
    fields.update(changes)
    received = receive_offline(json.dumps(fields))
    assert received.decode_error is None
    assert received.verdict is not None and received.verdict.permanent
    assert reason in received.verdict.reason
    assert received.task == fields["task"]  # the record says which task it was for


def _scheduled_mutations():
    base = json.loads(_body())
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-2, 2**70),
        st.floats(),
        st.text(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    )
    key = st.sampled_from([*base, "extra", ""])

    def mutate(changes):
        out = dict(base)
        for k, v in changes:
            if v is ...:
                out.pop(k, None)
            else:
                out[k] = v
        return out

    return st.lists(st.tuples(key, st.one_of(values, st.just(...))), max_size=3).map(mutate)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_scheduled_mutations())
def test_any_mutation_of_a_scheduled_message_is_a_genuine_job_or_refused(fields):
    try:
        text = json.dumps(fields)
    except ValueError:
        return
    received = receive_offline(text)
    assert received.decode_error is None, "Celery would delete it unrecorded"
    if received.verdict is None:  # accepted: a genuine job with the derived id
        assert received.job_id == job_id(fields["schedule"], fields["scheduled_time"])
        assert received.message.decode()[1] == fields["kwargs"]
    else:
        assert 0 < len(received.verdict.reason) <= 2000


# --- the local scheduler, without a process ----------------------------------------------


def test_the_local_scheduler_sends_what_eventbridge_would_at_the_scaled_times():
    sent: list[str] = []
    now = [1_800_000_000.0]

    class Scheduler(LocalScheduler):
        pass

    s = Schedule("rate(1 minute)", {"x": 1, "y": 2}, "every-minute", "tasks.debug.add")
    scheduler = Scheduler({"every-minute": s}, sent.append, time_scale=60, clock=lambda: now[0])

    def wait(timeout=None):  # time passes only when the scheduler waits
        now[0] += timeout or 0
        if len(sent) >= 3:
            scheduler.stopped.set()
        return scheduler.stopped.is_set()

    scheduler.stopped.wait = wait
    assert scheduler.run() == 0
    fired = [json.loads(b) for b in sent]
    assert [f["scheduled_time"] for f in fired] == [
        iso(datetime.fromtimestamp(1_800_000_000 + n, UTC)) for n in (1, 2, 3)
    ]
    assert {f["schedule"] for f in fired} == {"local:every-minute"}
    assert len({f["execution_id"] for f in fired}) == 3
    for body in sent:
        received = receive_offline(body)
        assert received.verdict is None and received.message.headers["origin"] == "local-scheduler"


def test_the_dlq_tools_name_a_scheduled_messages_task_and_job_id():
    from tasks.ops.dlq import describe

    letter = describe({"MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": _body()})
    assert (letter.task, letter.task_id) == (
        "tasks.debug.add",
        job_id(ARN, FIRED["scheduled_time"]),
    )
