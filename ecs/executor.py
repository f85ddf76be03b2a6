"""Carrying a plan out, or showing it.

`Executor` makes each step's calls in order (retried and waited for with ecs.retry's
helpers), records what later calls need, and prints one line per resource. `Display`
prints the same lines without calling anything; with `calls=True` each step's calls
follow its line, a `Ref` shown as <name> (a value an earlier call will answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from botocore import xform_name
from botocore.exceptions import ClientError

from ecs.plan import Call, Context, Do, Outputs, Plan, Ref, Step, Wait, progress_line
from ecs.retry import Patient, WaitTimeout, poll, retry_until

Echo = Callable[[str], None]


def resolve(value, outputs: Outputs):
    """`value` with every Ref in it replaced by the output it names."""
    if isinstance(value, Ref):
        return value.template.format(outputs[value.name])
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, outputs) for v in value]
    return value


def _pick(answer: dict, path: str) -> str:
    value = answer
    for key in path.split("."):
        value = value[key]
    return str(value)


class Executor:
    """Makes the calls of a plan (see the module's docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def client(self, service: str):
        # Throttling is backed off on every call; clients.ecs, clients.application_autoscaling
        return Patient(
            getattr(self.ctx.clients, service.replace("-", "_")), sleep=self.ctx.clock.sleep
        )

    def apply(self, plan: Plan) -> Outputs:
        """Carry a plan out in order, one progress line per resource."""
        outputs: Outputs = {}
        for step in plan.steps:
            self.run(step, outputs)
        return outputs

    def run(self, step: Step, outputs: Outputs | None = None) -> Outputs:
        """One step: its instructions in order, then its line (FAILED if one raised)."""
        outputs = {} if outputs is None else outputs
        echo = self.ctx.echo
        outputs.update(step.outputs)
        progress = self.ctx.progress(step.kind, step.name)
        try:
            note = None
            for instruction in step.instructions:
                note = self._do(instruction, outputs, progress) or note
        except Exception:
            echo(f"  {'FAILED':10} {step.kind:28} {step.name}")
            raise
        if step.done is not None:
            step.detail = step.done.format(**outputs)
        elif note:
            step.detail = note
        echo(step.line(done=True))
        for line in step.notes:
            echo(line)
        return outputs

    def _do(self, instruction, outputs: Outputs, progress) -> str | None:
        if isinstance(instruction, Call):
            self.call(instruction, outputs, progress)
            return None
        if isinstance(instruction, Do):
            return instruction.run(outputs)
        return self._wait(instruction, outputs, progress)

    def call(self, call: Call, outputs: Outputs, progress) -> dict:
        method = getattr(self.client(call.service), xform_name(call.operation))
        params = resolve(call.params, outputs)
        try:
            if call.retry is None:
                answer = method(**params)
            else:
                r = call.retry
                answer = retry_until(
                    method,
                    **params,
                    retryable=r.retryable,
                    deadline=r.deadline,
                    base=r.base,
                    cap=r.cap,
                    clock=self.ctx.clock,
                    progress=progress,
                )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in call.ignore:
                return {}
            raise
        if call.verify is not None:
            call.verify(answer)
        for name, path in call.record.items():
            outputs[name] = _pick(answer, path)
        return answer

    def _wait(self, wait: Wait, outputs: Outputs, progress) -> str | None:
        try:
            return (
                poll(
                    lambda: wait.check(outputs),
                    deadline=wait.deadline,
                    interval=wait.interval,
                    progress=progress,
                    what=wait.what,
                    clock=self.ctx.clock,
                )
                or None
            )
        except WaitTimeout as exc:
            if wait.warn_on_timeout is None:
                raise
            self.ctx.echo(f"  ({wait.warn_on_timeout.format(error=exc)})")
            return None


def _shown(value) -> str:
    if isinstance(value, Ref):
        return value.template.format(f"<{value.name}>")
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def show_call(call: Call, width: int = 60) -> list[str]:
    """`service.Operation key=value ...` on one line when it is short, else the operation
    then one parameter a line; each value cut to `width` characters."""

    def text(value) -> str:
        if isinstance(value, dict | list | tuple):
            shown = json.dumps(value, default=_shown, sort_keys=True)
        else:
            shown = _shown(value)
        return shown if len(shown) <= width else shown[: width - 3] + "..."

    name = f"{call.service}.{call.operation}"
    params = [f"{k}={text(v)}" for k, v in call.params.items()]
    line = " ".join([name, *params])
    return [line] if len(line) <= 84 else [name, *(f"    {p}" for p in params)]


class Display:
    """Prints a plan: what each resource would undergo, and with `calls` the calls."""

    def __init__(self, echo: Echo = print, calls: bool = False) -> None:
        self.echo = echo
        self.calls = calls

    def apply(self, plan: Plan) -> None:
        for step in plan.steps:
            self.echo(step.line(done=False))
            if not self.calls:
                continue
            for instruction in step.instructions:
                if isinstance(instruction, Call):
                    self._show(instruction, 15)
                    continue
                verb = "wait until" if isinstance(instruction, Wait) else "do"
                self.echo(f"{'':15}{verb} {instruction.what}:")
                for call in instruction.calls:
                    self._show(call, 17)

    def _show(self, call: Call, indent: int) -> None:
        for line in show_call(call):
            self.echo(" " * indent + line)
        if call.retry is not None:  # eventual consistency: see ecs.retry
            self.echo(
                f"{'':{indent + 4}}(retried while {call.retry.retryable.__name__}, "
                f"at most {call.retry.deadline:.0f}s)"
            )


__all__ = ["Display", "Executor", "progress_line", "resolve", "show_call"]
