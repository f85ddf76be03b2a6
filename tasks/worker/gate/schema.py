"""How the gate validates a document: compiled for speed, explained in words, and the
walk for what JSON Schema cannot say (nesting depth, NaN, lone surrogates)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import fastjsonschema
from jsonschema import Draft7Validator

from tasks.celery_private import maybe_iso8601
from tasks.jobkit.schema_errors import describe
from tasks.worker.gate.protocol import MAX_DEPTH


def _is_datetime(value: object) -> bool:
    """Parsed as Celery's Request parses it, and convertible as its strategy converts it
    (an ETA of year 1 at +14:00 overflowed there; an offset in seconds did not parse)."""
    if not isinstance(value, str):
        return True
    try:
        parsed = maybe_iso8601(value)
        if parsed is None:  # "": Celery's Request then fails on None.tzinfo
            return False
        parsed.astimezone(UTC).timestamp()
        parsed.astimezone().timestamp()
    except (ValueError, OverflowError, OSError):
        return False
    return True


class Schema:
    """One schema, two validators: fastjsonschema's compiled code decides (about 12 times
    faster than jsonschema: the gate runs for every message on the consumer's event loop),
    and jsonschema explains a refusal in readable words. tests/test_gate.py checks that the
    two agree on generated documents."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.detail = Draft7Validator(schema, format_checker=_FORMATS)
        self.fast = fastjsonschema.compile(schema, formats={"date-time": _is_datetime})

    def accepts(self, instance: Any) -> bool:
        try:
            self.fast(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        except Exception:  # a document its generated code trips over: let jsonschema judge
            return not any(True for _ in self.detail.iter_errors(instance))
        return True

    def iter_errors(self, instance: Any):
        if self.accepts(instance):
            return iter(())
        errors = list(self.detail.iter_errors(instance))
        # Never let a disagreement through: the compiled validator refused it.
        return iter(errors) if errors else iter([_Refusal("refused by the protocol schema")])


@dataclass
class _Refusal:
    message: str
    path: tuple = ()
    absolute_path: tuple = ()


_FORMATS = Draft7Validator.FORMAT_CHECKER.__class__()
_FORMATS.checks("date-time")(_is_datetime)


def first_error(validator: Schema, instance: Any, where: str) -> str | None:
    error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    # The record shows this reason: words from the schema, never the value (jsonschema's
    # own message quotes it, and a body holds the job's arguments).
    return describe(error, root=where)


def scan(value: Any, *, finite: bool) -> str | None:
    """What the schema cannot say, in one walk: "deep" (nesting past MAX_DEPTH), "nonfinite"
    (NaN or Infinity, when `finite` is asked for) or "surrogate", else None.

    A lone surrogate (JSON allows "\\ud800") is not Unicode, so not UTF-8: DynamoDB refuses
    the job record that would hold it (argsrepr, an error message), and Celery's backend
    retries that write for minutes."""
    nonfinite = surrogate = False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "deep"
        if isinstance(item, str):
            if not surrogate:
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    surrogate = True
        elif isinstance(item, float):
            nonfinite = nonfinite or (finite and not math.isfinite(item))
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return "nonfinite" if nonfinite else "surrogate" if surrogate else None
