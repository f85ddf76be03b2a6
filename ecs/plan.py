"""Plans: what `deploy` would do to each resource, and the code that does it.

A planner looks every resource up (read-only) and returns a `Step` per resource: create,
update or unchanged, with a note of what differs. Values a later step needs from an earlier
one (a task definition's new revision, a scaling policy's ARN) travel in `Outputs`, which
the steps fill as they are applied; `plan` only shows the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ecs.retry import REAL_CLOCK, Clock

# "check" steps change nothing: they wait for and verify what the steps before them made
# (the service's rollout, the smoke task), so that the API is only switched after them.
Action = Literal["create", "update", "unchanged", "check", "delete"]
PAST = {"create": "created", "update": "updated", "unchanged": "unchanged",
        "check": "checked", "delete": "deleted"}
Outputs = dict[str, str]


def progress_line(kind: str, name: str, detail: str) -> str:
    """The line printed while a step waits on AWS (one per poll or retry)."""
    return f"  {'waiting':10} {kind:28} {name}  ({detail})"


@dataclass
class Step:
    kind: str
    name: str
    action: Action
    detail: str = ""
    # Does the work; returns a note for the progress line. None for unchanged steps
    # whose outputs are already known.
    run: Callable[[Outputs], str | None] | None = None
    outputs: Outputs = field(default_factory=dict)

    def line(self, done: bool) -> str:
        verb = PAST[self.action] if done else self.action
        text = f"  {verb:10} {self.kind:28} {self.name}"
        return f"{text}  ({self.detail})" if self.detail else text


@dataclass
class Plan:
    steps: list[Step]

    @property
    def changes(self) -> int:
        return sum(1 for s in self.steps if s.action in ("create", "update", "delete"))

    def summary(self) -> str:
        counts = {a: sum(1 for s in self.steps if s.action == a)
                  for a in ("create", "update", "unchanged", "check")}
        text = (f"{counts['create']} to create, {counts['update']} to update, "
                f"{counts['unchanged']} unchanged")
        deletes = sum(1 for s in self.steps if s.action == "delete")  # a removed schedule
        text += f", {deletes} to delete" if deletes else ""
        return text + (f", {counts['check']} to check" if counts["check"] else "")


def apply(plan: Plan, echo: Callable[[str], None] = print) -> Outputs:
    """Carry a plan out in order, one progress line per resource."""
    outputs: Outputs = {}
    for step in plan.steps:
        outputs.update(step.outputs)
        if step.run is not None:
            try:
                note = step.run(outputs)
            except Exception:
                echo(f"  {'FAILED':10} {step.kind:28} {step.name}")
                raise
            if note:
                step.detail = note
        echo(step.line(done=True))
    if plan.changes == 0:
        echo("nothing changed: the stack is up to date")
    return outputs


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

    def progress(self, kind: str, name: str) -> Callable[[str], None]:
        """Where a step's waits report: one progress line per poll or retry."""
        return lambda detail: self.echo(progress_line(kind, name, detail))


def canonical_json(value: object) -> str:
    """JSON with keys and list items in a fixed order: AWS echoes documents back reordered."""
    def norm(x):
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, list):
            return sorted((norm(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
        return x
    return json.dumps(norm(value), sort_keys=True)
