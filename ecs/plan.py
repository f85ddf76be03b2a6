"""Plans as data: for each resource, what is done to it and the AWS calls that do it.

A planner looks a resource up (read-only) and returns a `Step`: the resource (kind, name),
the action (create, update, unchanged, check; delete, absent, kept, stop when destroying),
a note of what differs, and its instructions: `Call`s (service, operation, parameters),
`Wait`s (a poll with a deadline) and `Do`s (work of several calls, such as a loop over
pages or a helper shared with local provisioning, which says the calls it makes). A value
known only once an earlier call has answered (a new task definition's ARN) is a `Ref`,
which the call that learns it `record`s; the executor (ecs.executor) resolves it, a
display executor prints it as <name>. `Outputs` carries the values already known when
planning (an existing queue's URL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from ecs.retry import REAL_CLOCK, Clock, Retryable

# "check" steps change nothing: they wait for and verify what the steps before them made
# (the service's rollout, the smoke task), so that the API is only switched after them.
Action = Literal["create", "update", "unchanged", "check", "delete", "absent", "kept", "stop"]
PAST = {
    "create": "created",
    "update": "updated",
    "unchanged": "unchanged",
    "check": "checked",
    "delete": "deleted",
    "absent": "absent",
    "kept": "kept",
    "stop": "stopped",
}
REMOVALS = ("delete", "stop")
Outputs = dict[str, str]


@dataclass(frozen=True)
class Ref:
    """A value an earlier call of the plan records (a new resource's id or ARN)."""

    name: str
    # How the value is used: "{}:v1" makes "abc123:v1" of the output "abc123".
    template: str = "{}"


@dataclass(frozen=True)
class Retry:
    """Retry a call while AWS answers an error `retryable` names (eventual consistency:
    ecs.retry.retry_until), at most `deadline` seconds."""

    retryable: Retryable
    deadline: float
    base: float = 2.0
    cap: float = 15.0


@dataclass(frozen=True)
class Call:
    """One AWS API call: boto3's service name, botocore's operation name, its parameters
    (a `Ref` anywhere in them is resolved when the call is made)."""

    service: str
    operation: str
    params: dict = field(default_factory=dict)
    # output name -> dotted path of the value in the answer ("taskDefinition.revision")
    record: dict[str, str] = field(default_factory=dict)
    retry: Retry | None = None
    # Error codes that mean the work is done already (a table deleted meanwhile).
    ignore: tuple[str, ...] = ()
    # Looks at the answer and raises if it is not acceptable (warnings of an import).
    verify: Callable[[dict], None] | None = None

    @property
    def mutating(self) -> bool:
        return not self.operation.startswith(("Describe", "Get", "List", "Head"))


@dataclass(frozen=True)
class Wait:
    """Poll until AWS has done something (a service drained, tasks stopped): check(outputs)
    returns (done, text); `calls` are what each poll reads."""

    what: str
    check: Callable[[Outputs], tuple[bool, str]]
    deadline: float
    interval: float
    calls: tuple[Call, ...] = ()
    # Past the deadline, print this (with {error}) and go on instead of failing.
    warn_on_timeout: str | None = None


@dataclass(frozen=True)
class Do:
    """Work of more than one call, run as code: run(outputs) returns a note or None;
    `calls` are the calls it makes (parameters as far as they are known)."""

    what: str
    run: Callable[[Outputs], str | None]
    calls: tuple[Call, ...] = ()


Instruction = Call | Wait | Do


def progress_line(kind: str, name: str, detail: str) -> str:
    """The line printed while a step waits on AWS (one per poll or retry)."""
    return f"  {'waiting':10} {kind:28} {name}  ({detail})"


@dataclass
class Step:
    kind: str
    name: str
    action: Action
    detail: str = ""
    instructions: list[Instruction] = field(default_factory=list)
    # Values known when planning, for the steps after this one.
    outputs: Outputs = field(default_factory=dict)
    # The detail once done, formatted with the outputs ("revision {task_revision}").
    done: str | None = None
    # Lines printed under the step's line once done (who deletes what destroy keeps).
    notes: list[str] = field(default_factory=list)
    # How many resources a removal removes (a task definition's revisions).
    count: int = 1

    def line(self, done: bool) -> str:
        verb = PAST[self.action] if done else self.action
        text = f"  {verb:10} {self.kind:28} {self.name}"
        return f"{text}  ({self.detail})" if self.detail else text

    def calls(self) -> Iterator[Call]:
        """Every call the step makes or declares, in order (waits' and dos' included)."""
        for instruction in self.instructions:
            if isinstance(instruction, Call):
                yield instruction
            else:
                yield from instruction.calls


@dataclass
class Plan:
    steps: list[Step]

    @property
    def changes(self) -> int:
        return sum(1 for s in self.steps if s.action in ("create", "update", *REMOVALS))

    @property
    def removed(self) -> int:
        return sum(s.count for s in self.steps if s.action in REMOVALS)

    def summary(self) -> str:
        counts = {a: sum(1 for s in self.steps if s.action == a) for a in PAST}
        if any(s.action in (*REMOVALS, "absent", "kept") for s in self.steps):  # destroy's
            text = f"{counts['delete'] + counts['stop']} to delete, {counts['absent']} absent"
            return text + (f", {counts['kept']} kept" if counts["kept"] else "")
        text = (
            f"{counts['create']} to create, {counts['update']} to update, "
            f"{counts['unchanged']} unchanged"
        )
        deletes = counts["delete"]  # a removed schedule
        text += f", {deletes} to delete" if deletes else ""
        return text + (f", {counts['check']} to check" if counts["check"] else "")


def diff(current: dict, desired: dict) -> list[str]:
    """Names of the desired keys whose current value differs."""
    return sorted(k for k, v in desired.items() if current.get(k) != v)


@dataclass
class Context:
    """What every planner gets: the clients, the desired stack, and the predictions of the
    steps planned before it (e.g. whether the task definition gets a new revision)."""

    clients: object
    stack: object
    predicted: Outputs = field(default_factory=dict)
    echo: Callable[[str], None] = print
    clock: Clock = REAL_CLOCK
    builder: object = None  # ecs.image.ImageBuilder, for the image step
    keep_data: bool = False  # destroy: keep the table and the bucket

    def progress(self, kind: str, name: str) -> Callable[[str], None]:
        """Where a step's waits report: one progress line per poll or retry."""
        return lambda detail: self.echo(progress_line(kind, name, detail))


def tag_list(stack, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    """The stack's tags as most APIs take them: [{"Key": k, "Value": v}]."""
    return [{key: k, value: v} for k, v in stack.tags.items()]


def canonical_json(value: object) -> str:
    """JSON with keys and list items in a fixed order: AWS echoes documents back reordered."""

    def norm(x):
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, list):
            return sorted((norm(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
        return x

    return json.dumps(norm(value), sort_keys=True)
