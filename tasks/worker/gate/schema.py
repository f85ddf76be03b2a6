"""How the gate validates a document: compiled for speed, explained in words, and the
walk for what JSON Schema cannot say (nesting depth, NaN, lone surrogates)."""

from __future__ import annotations

import math
import re
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
        self.fast = fastjsonschema.compile(
            cheaper_to_run(schema), formats={"date-time": _is_datetime}
        )

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


def cheaper_to_run(schema: Any) -> Any:
    """The same schema, in the forms fastjsonschema's generated code runs without raising.

    Its code tries each `anyOf` branch and `not` by raising and catching an exception (with
    the branch's schema built as a dict each time): a null-or-ID header cost one per header,
    and `propertyNames: {not: {enum}}` one per header name, most of the gate's time. Equal
    in JSON Schema: `{anyOf: [{type: null}, {type: T, ...}]}` is `{type: [null, T], ...}`
    (every other keyword of such a branch ignores null), and `{pattern: P, not: {enum}}` on
    names is P with a negative lookahead for those names. Only the deciding validator gets
    this form; refusals are still explained from the schema as written."""
    if isinstance(schema, list):
        return [cheaper_to_run(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: cheaper_to_run(value) for key, value in schema.items()}
    merged = _null_or_one_type(schema)
    if merged is not None:
        return merged
    names = schema.get("propertyNames")
    if isinstance(names, dict):
        schema["propertyNames"] = _pattern_without_names(names)
    return schema


_TYPELESS = {"anyOf", "oneOf", "allOf", "not", "$ref", "enum", "const", "if"}


def _null_or_one_type(schema: dict[str, Any]) -> dict[str, Any] | None:
    branches = schema.get("anyOf")
    if set(schema) != {"anyOf"} or not isinstance(branches, list) or len(branches) != 2:
        return None
    if {"type": "null"} not in branches:
        return None
    other = branches[1 - branches.index({"type": "null"})]
    kind = other.get("type") if isinstance(other, dict) else None
    if not isinstance(kind, str) or kind == "null" or _TYPELESS & set(other):
        return None
    return {**other, "type": ["null", kind]}


def _pattern_without_names(names: dict[str, Any]) -> dict[str, Any]:
    pattern, refused = names.get("pattern"), names.get("not")
    if (
        set(names) != {"pattern", "not"}
        or not isinstance(pattern, str)
        or not pattern.startswith("^")
        or not isinstance(refused, dict)
        or set(refused) != {"enum"}
        or not all(isinstance(name, str) for name in refused["enum"])
    ):
        return names
    alternatives = "|".join(re.escape(name) for name in refused["enum"])
    return {"pattern": f"^(?!(?:{alternatives})\\Z){pattern[1:]}"}


@dataclass
class _Refusal:
    message: str
    path: tuple = ()
    absolute_path: tuple = ()


_FORMATS = Draft7Validator.FORMAT_CHECKER.__class__()
_FORMATS.checks("date-time")(_is_datetime)


def first_error(validator: Schema, instance: Any, where: str) -> str | None:
    if validator.accepts(instance):
        return None
    error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    # The record shows this reason: words from the schema, never the value (jsonschema's
    # own message quotes it, and a body holds the job's arguments).
    return describe(error, root=where)


def scan(*values: Any, finite: bool) -> str | None:
    """What the schema cannot say about these values, in one walk: "deep" (nesting past
    MAX_DEPTH), "nonfinite" (NaN or Infinity, when `finite` is asked for) or "surrogate",
    else None.

    A lone surrogate (JSON allows "\\ud800") is not Unicode, so not UTF-8: DynamoDB refuses
    the job record that would hold it (argsrepr, an error message), and Celery's backend
    retries that write for minutes.

    Each value is depth 1, a container's keys and items one deeper. Only containers go on
    the walk's stack; the strings are encoded once, joined (a lone surrogate cannot pair
    with a neighbour in a Python str, so the join fails exactly when one of them does)."""
    nonfinite = False
    strings: list[str] = []
    stack: list[tuple[Any, int]] = [(values, 0)]  # the values, as the items of depth 0
    while stack:
        container, depth = stack.pop()
        if not container:
            continue
        depth += 1  # its items'
        if depth > MAX_DEPTH:
            return "deep"
        items = (*container, *container.values()) if isinstance(container, dict) else container
        for item in items:
            kind = type(item)  # JSON's own types first; a subclass takes the isinstance path
            if kind is str:
                strings.append(item)
            elif kind is dict or kind is list:
                stack.append((item, depth))
            elif kind is int or kind is bool or item is None:
                pass
            elif isinstance(item, str):
                strings.append(item)
            elif isinstance(item, float):
                if finite and not nonfinite and not math.isfinite(item):
                    nonfinite = True
            elif isinstance(item, dict | list):
                stack.append((item, depth))
    if nonfinite:
        return "nonfinite"
    try:
        "".join(strings).encode("utf-8")
    except UnicodeEncodeError:
        return "surrogate"
    return None
