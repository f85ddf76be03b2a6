"""What a JSON Schema refusal says: where, and which rule failed; never the refused value.

jsonschema's own messages quote the value (`{'name': 'Jane Roe', ...} is not of type
'array'`), and a job's arguments may be personal data that its record and GET /jobs/{id}
must not show (tasks.results.public_errors). These words come from the schema alone: the
path, the keyword and its constraint. A path step that is an object key the input chose
(under additionalProperties or patternProperties) shows as `*`; array indexes show as they
are; property names show only where the schema names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

MAX_CONSTRAINT_CHARS = 200

# Schema-path keywords, by what they do to the instance path (jsonschema's absolute_schema_path
# names the keyword, then its argument when it has one: a property name, a pattern, an index).
NAMED_KEY = {"properties"}  # + name: the key is the schema's
FREE_KEY_WITH_ARG = {"patternProperties"}  # + pattern: the key is the input's
FREE_KEY = {"additionalProperties", "unevaluatedProperties"}
INDEX_WITH_ARG = {"prefixItems"}  # + index
INDEX = {"additionalItems", "unevaluatedItems", "contains"}
SAME_WITH_ARG = {
    "anyOf",
    "oneOf",
    "allOf",
    "dependencies",
    "dependentSchemas",
    "definitions",
    "$defs",
}  # + index or name: same instance
SAME = {"not", "if", "then", "else", "$ref", "$dynamicRef", "propertyNames"}


# Each schema keyword the path may pass: the kind of instance step it takes (None: none)
# and how many schema-path tokens it spans (the keyword, and its argument where it has one).
STEPS: dict[str, tuple[str | None, int]] = {
    **{key: ("named", 2) for key in NAMED_KEY},
    **{key: ("free", 2) for key in FREE_KEY_WITH_ARG},
    **{key: ("free", 1) for key in FREE_KEY},
    **{key: ("index", 2) for key in INDEX_WITH_ARG},
    **{key: ("index", 1) for key in INDEX},
    **{key: (None, 2) for key in SAME_WITH_ARG},
    **{key: (None, 1) for key in SAME},
}


def describe_all(errors: Iterable[Any], root: str | None = None) -> list[str]:
    """`where: rule` for each error, ordered by path, without repeats."""
    ordered = sorted(
        errors,
        key=lambda e: [
            (1, p) if isinstance(p, int) else (0, str(p)) for p in getattr(e, "absolute_path", ())
        ],
    )
    return list(dict.fromkeys(describe(error, root) for error in ordered))


def describe(error: Any, root: str | None = None) -> str:
    """`where: rule` for one jsonschema ValidationError. `root` starts the path (`headers`);
    without one an error at the top is at `(body)`. Anything without a `validator` (a refusal
    of our own) keeps its message, which names no value either."""
    steps = [root] if root else []
    steps += shown_path(error)
    where = ".".join(steps) or "(body)"
    return f"{where}: {rule(error)}"


def shown_path(error: Any) -> list[str]:
    path = list(getattr(error, "absolute_path", ()))
    if not path:
        return []
    kinds = step_kinds(
        list(getattr(error, "absolute_schema_path", ())), getattr(error, "validator", None)
    )
    if kinds is None or len(kinds) != len(path):
        kinds = ["free"] * len(path)  # not understood: hide every key, keep the indexes
    return [
        str(step) if isinstance(step, int) or kind == "named" else "*"
        for step, kind in zip(path, kinds, strict=True)
    ]


def step_kinds(schema_path: Sequence[Any], validator: Any) -> list[str] | None:
    """For each instance-path step the schema path went through: "named" (a property the
    schema names), "free" (a key the input chose) or "index"; None if a keyword is unknown."""
    tokens = list(schema_path)
    if tokens and tokens[-1] == validator:
        tokens.pop()  # the keyword that failed: it takes no step
    kinds: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "items":  # draft 4 tuple form: items, <index>
            kinds.append("index")
            i += 2 if i + 1 < len(tokens) and isinstance(tokens[i + 1], int) else 1
            continue
        step = STEPS.get(token) if isinstance(token, str) else None
        if step is None:
            return None
        kind, width = step
        if kind:
            kinds.append(kind)
        i += width
    return kinds


def constraint(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_CONSTRAINT_CHARS else text[:MAX_CONSTRAINT_CHARS] + "..."


def rule(error: Any) -> str:
    """The failed rule in words, from the keyword and its constraint only."""
    if not hasattr(error, "validator"):
        return str(getattr(error, "message", "refused by the schema"))
    keyword = error.validator
    text = _keyword_rule(keyword, error.validator_value, error)
    if "propertyNames" in list(getattr(error, "absolute_schema_path", ())):
        return f"has a property name that {text}"
    return text


def _keyword_rule(keyword: Any, value: Any, error: Any) -> str:
    schema = error.schema if isinstance(getattr(error, "schema", None), dict) else {}
    instance = getattr(error, "instance", None)
    if keyword == "type":
        types = value if isinstance(value, list) else [value]
        return "is not of type " + ", ".join(constraint(t) for t in types)
    if keyword == "required":
        # Names from the schema; the instance only tells which of them are missing.
        names = [n for n in value if not (isinstance(instance, dict) and n in instance)]
        names = names or list(value)
        if len(names) == 1:
            return f"{constraint(names[0])} is a required property"
        return ", ".join(constraint(n) for n in names) + " are required properties"
    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        patterns = sorted(schema.get("patternProperties", {}))
        said = ", ".join(allowed + [f"names matching {constraint(p)}" for p in patterns])
        return "Additional properties are not allowed" + (f" (allowed: {said})" if said else "")
    if keyword in ("dependencies", "dependentRequired") and isinstance(value, dict):
        present = instance if isinstance(instance, dict) else {}
        missing = [
            f"{constraint(d)} is a dependency of {constraint(name)}"
            for name, needed in value.items()
            if name in present and isinstance(needed, list)
            for d in needed
            if d not in present
        ]
        return "; ".join(missing) or "fails its dependencies"
    if keyword in ("minimum", "maximum"):
        below = keyword == "minimum"
        exclusive = schema.get("exclusiveMinimum" if below else "exclusiveMaximum") is True
        side = "less" if below else "greater"
        return (
            f"is {side} than {'or equal to ' if exclusive else ''}the {keyword} of "
            f"{constraint(value)}"
        )
    if keyword in ("exclusiveMinimum", "exclusiveMaximum"):
        side, bound = (
            ("less", "minimum") if keyword == "exclusiveMinimum" else ("greater", "maximum")
        )
        return f"is {side} than or equal to the {bound} of {constraint(value)}"
    if keyword == "oneOf" and not getattr(error, "context", None):
        return "is valid under more than one of the given schemas (oneOf)"
    simple = {
        "enum": f"is not one of {constraint(value)}",
        "const": f"{constraint(value)} was expected",
        "multipleOf": f"is not a multiple of {constraint(value)}",
        "minLength": f"is too short (minLength {constraint(value)})",
        "maxLength": f"is too long (maxLength {constraint(value)})",
        "minItems": f"has too few items (minItems {constraint(value)})",
        "maxItems": f"has too many items (maxItems {constraint(value)})",
        "minProperties": f"has too few properties (minProperties {constraint(value)})",
        "maxProperties": f"has too many properties (maxProperties {constraint(value)})",
        "uniqueItems": "has non-unique elements (uniqueItems)",
        "pattern": f"does not match {constraint(value)}",
        "format": f"is not a {constraint(value)}",
        "additionalItems": "has more items than the schema allows (additionalItems)",
        "anyOf": "is not valid under any of the given schemas (anyOf)",
        "oneOf": "is not valid under any of the given schemas (oneOf)",
        "not": "is valid under the schema in 'not', which it must not be",
        "contains": "has no item valid under the schema in 'contains'",
        None: "is not allowed here (the schema is false)",
    }
    if keyword in simple:
        return simple[keyword]
    return f"fails {constraint(keyword)} {constraint(value)}"
