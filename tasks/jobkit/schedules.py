"""Schedules a job declares: `@job(schedule="rate(15 minutes)")`, no beat process.

An expression is EventBridge Scheduler's, checked when the job is decorated:

* `rate(<n> <unit>)`: unit `minute`/`minutes`, `hour`/`hours`, `day`/`days` (singular for
  1, plural for more, as AWS requires); it fires every n units from when it is made.
* `cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)`, in UTC: numbers,
  `*`, ranges `a-b`, lists `a,b`, steps `a/n`, `*/n`, `a-b/n`; month names JAN-DEC and day
  names SUN-SAT (1 = Sunday); exactly one of day-of-month and day-of-week is `?`. AWS's
  `L`, `W` and `#` are refused: the local scheduler (tasks.ops.local_scheduler) computes
  every expression it accepts, so what `make run` fires is what AWS fires.
* `at(yyyy-mm-ddThh:mm:ss)`: once, in UTC.

`ecs deploy` turns each schedule into an EventBridge Scheduler schedule whose target is
the work queue (ecs/schedules.py); the message it sends is `scheduled_body` (docs/writing-jobs.md's
message contract); the worker turns it into a protocol v2 message (tasks/worker/scheduled.py).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# The context attributes EventBridge Scheduler puts into a target's Input when it fires.
SCHEDULE_ARN = "<aws.scheduler.schedule-arn>"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
EXECUTION_ID = "<aws.scheduler.execution-id>"
ATTEMPT = "<aws.scheduler.attempt-number>"

# The job id of a firing: uuid5 of the schedule and its scheduled time, so every retried
# delivery of one firing has the same id. Fixed forever (a new namespace, new ids).
JOB_ID_NAMESPACE = uuid.UUID("6f1d3c9e-5a8b-4f0e-9d47-2b7c1e0a9f33")
LOCAL_PREFIX = "local:"  # the `schedule` the local scheduler sends: local:<name>

MAX_NAME = 64  # EventBridge Scheduler: 1-64 of [0-9a-zA-Z-_.]
NAME_PATTERN = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
MAX_INPUT_CHARS = 8192  # our bound for the fixed kwargs of one schedule, far below SQS's

RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
# field name, lowest, highest, names
CRON_FIELDS = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 1, 7, DAYS),
    ("year", 1970, 2199, {}),
)
_RATE = re.compile(r"^rate\(([0-9]+) ([a-z]+)\)$")
_CRON = re.compile(r"^cron\(([^()]*)\)$")
_AT = re.compile(r"^at\(([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\)$")


class Cron:
    """A parsed cron expression: the allowed values of each field (None: `?`)."""

    def __init__(self, fields: list[frozenset[int] | None]) -> None:
        self.minutes, self.hours, self.days, self.months, self.weekdays, self.years = fields

    def day_ok(self, when: datetime) -> bool:
        if self.days is None:
            aws_weekday = (when.weekday() + 1) % 7 + 1  # Python: Monday 0; AWS: Sunday 1
            return self.weekdays is not None and aws_weekday in self.weekdays
        return when.day in self.days

    def matches(self, when: datetime) -> bool:
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and self.day_ok(when)
            and when.month in self.months
            and when.year in self.years
        )

    def next_after(self, after: datetime) -> datetime | None:
        """The first matching minute strictly after `after` (None: never again)."""
        start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        times = [(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]
        while True:
            if day.year not in self.years:
                later = [y for y in self.years if y > day.year]
                if not later:
                    return None
                day = datetime(min(later), 1, 1, tzinfo=UTC)
                continue
            if day.month in self.months and self.day_ok(day):
                for hour, minute in times:
                    when = day.replace(hour=hour, minute=minute)
                    if when >= start:
                        return when
            day += timedelta(days=1)


def _cron_field(
    text: str, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int] | None:
    def value(token: str) -> int:
        number = names.get(token.upper()) if names else None
        if number is None:
            if "#" in token or token.upper().rstrip("LW") != token.upper():
                raise ValueError(
                    f"{name} {token!r}: AWS's L, W and # are not supported "
                    "here (use numbers, ranges, lists and steps)"
                )
            if not (token.isascii() and token.isdigit()):
                extra = f" or {'/'.join(names)}" if names else ""
                raise ValueError(f"{name} {token!r} is not a number{extra}")
            number = int(token)
        if not low <= number <= high:
            raise ValueError(f"{name} {number} is out of range {low}-{high}")
        return number

    if text == "?":
        return None
    allowed: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ValueError(f"{name} step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = value(a), value(b)
            if first > last:
                raise ValueError(f"{name} range {base!r} runs backwards")
        elif base:
            first = value(base)
            last = high if step_text else first
        else:
            raise ValueError(f"{name} has an empty part in {text!r}")
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def parse_cron(expression: str) -> Cron:
    match = _CRON.fullmatch(expression)
    if not match:
        raise ValueError("not a cron(...) expression")
    parts = match.group(1).split(" ")
    if len(parts) != 6 or not all(parts):
        raise ValueError(
            "cron(...) needs 6 fields separated by single spaces: minutes hours "
            "day-of-month month day-of-week year"
        )
    fields = [_cron_field(text, *spec) for text, spec in zip(parts, CRON_FIELDS, strict=True)]
    if [fields[2] is None, fields[4] is None].count(True) != 1:
        raise ValueError("cron(...): exactly one of day-of-month and day-of-week must be '?'")
    for i in (0, 1, 3, 5):
        if fields[i] is None:
            raise ValueError(f"cron(...): {CRON_FIELDS[i][0]} cannot be '?'")
    return Cron(fields)


def rate_seconds(expression: str) -> int:
    match = _RATE.fullmatch(expression)
    if not match:
        raise ValueError("not a rate(value unit) expression")
    count, unit = int(match.group(1)), match.group(2)
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in RATE_UNITS:
        raise ValueError(f"rate unit {unit!r}: use minute(s), hour(s) or day(s)")
    if count < 1:
        raise ValueError("a rate must be at least 1")
    if (count == 1) != (unit == singular):
        raise ValueError(
            f"rate({count} {unit}): AWS wants the singular for 1 and the plural for more"
        )
    return count * RATE_UNITS[singular]


def check_expression(expression: str) -> str:
    """The expression if EventBridge Scheduler and the local scheduler both take it; else
    ValueError saying what is wrong."""
    if not isinstance(expression, str):
        raise ValueError(f"a schedule expression is a string, not {type(expression).__name__}")
    try:
        if expression.startswith("rate("):
            rate_seconds(expression)
        elif expression.startswith("cron("):
            parse_cron(expression)
        elif expression.startswith("at("):
            at_time(expression)
        else:
            raise ValueError("use rate(...), cron(...) or at(...)")
    except ValueError as exc:
        raise ValueError(f"schedule {expression!r}: {exc}") from None
    return expression


def at_time(expression: str) -> datetime:
    match = _AT.fullmatch(expression)
    if not match:
        raise ValueError("not an at(yyyy-mm-ddThh:mm:ss) expression")
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    """One schedule of a job: when, with which fixed kwargs, under which name.

    `name` is the EventBridge schedule's name (1-64 of [0-9a-zA-Z-_.]); by default it is
    derived from the task's name and the schedule's position, stable across deploys."""

    expression: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    task: str = ""  # filled in by @job
    module: str = ""  # the job's module (ecs deploys the schedules of JOBS_MODULES)

    def __post_init__(self) -> None:
        check_expression(self.expression)
        if not isinstance(self.kwargs, dict):
            raise ValueError(f"schedule {self.expression!r}: kwargs must be a dict")
        try:
            text = json.dumps(self.kwargs, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"schedule {self.expression!r}: kwargs must be JSON: {exc}") from None
        if len(text) > MAX_INPUT_CHARS:
            raise ValueError(
                f"schedule {self.expression!r}: kwargs over {MAX_INPUT_CHARS} characters of JSON"
            )
        if self.name is not None and not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"schedule name {self.name!r}: 1-64 of letters, digits, '-', '_' and '.'"
            )

    def next_fire(self, after: datetime, started: datetime) -> datetime | None:
        """When it fires next, strictly after `after`; a rate counts from `started`."""
        if self.expression.startswith("rate("):
            period = rate_seconds(self.expression)
            elapsed = (after - started).total_seconds()
            return started + timedelta(seconds=period * (int(elapsed // period) + 1))
        if self.expression.startswith("at("):
            when = at_time(self.expression)
            return when if when > after else None
        return parse_cron(self.expression).next_after(after)


def schedule_name(task: str, index: int, given: str | None) -> str:
    """A stable name: the given one, else the task's name (dots kept) and the position,
    cut with a short digest when longer than 64 characters."""
    if given:
        return given
    base = re.sub(r"[^0-9A-Za-z_.-]", "-", task) + f"-{index}"
    if len(base) <= MAX_NAME:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{base[: MAX_NAME - 9]}-{digest}"


def bind(task: str, declared: Any, check_kwargs, module: str = "") -> tuple[Schedule, ...]:
    """The job's schedules, each named and its kwargs checked with `check_kwargs` (the job's
    schema and signature), at decoration time."""
    if declared is None:
        return ()
    items = declared if isinstance(declared, list | tuple) else [declared]
    out: list[Schedule] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = Schedule(item)
        if not isinstance(item, Schedule):
            raise ValueError(
                f"{task}: schedule= takes an expression, a Schedule or a list "
                f"of them, not {type(item).__name__}"
            )
        try:
            check_kwargs(item.kwargs)
        except Exception as exc:  # InvalidJobInput: say which schedule
            raise ValueError(f"{task}: schedule {item.expression!r} kwargs: {exc}") from None
        out.append(
            Schedule(
                item.expression,
                dict(item.kwargs),
                schedule_name(task, index, item.name),
                task,
                module,
            )
        )
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{task}: two schedules share a name: {names}")
    return tuple(out)


def scheduled_body(
    task: str,
    kwargs: dict[str, Any],
    *,
    schedule: str = SCHEDULE_ARN,
    scheduled_time: str = SCHEDULED_TIME,
    execution_id: str = EXECUTION_ID,
    attempt: str = ATTEMPT,
) -> str:
    """The SQS body a firing sends (the "scheduled message" of docs/writing-jobs.md's message
    contract). On AWS it is the schedule's Input with the context attributes left in for
    EventBridge Scheduler to fill; the local scheduler fills them itself."""
    return json.dumps(
        {
            "scheduled": 1,
            "task": task,
            "kwargs": kwargs,
            "schedule": schedule,
            "scheduled_time": scheduled_time,
            "execution_id": execution_id,
            "attempt": attempt,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def job_id(schedule: str, scheduled_time: str) -> str:
    return str(uuid.uuid5(JOB_ID_NAMESPACE, f"{schedule}\n{scheduled_time}"))
