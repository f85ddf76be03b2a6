"""The message gate: every field of Celery protocol v2 checked before Celery sees a message.

Stock Celery stops the whole worker on some malformed messages (a body without
its third element, `headers.timelimit` that is not a pair, an ETA that is not a
date...), some in the consumer, some later inside billiard's pool maintenance,
and the message then returns after the visibility timeout and stops the next
worker. The gate checks a message against one declarative schema of the
protocol (`HEADERS`, `PROPERTIES`, `BODY` below, JSON Schema), and Celery is
given only messages that pass: a message that fails is recorded and left to
SQS's redrive policy (tasks.worker.consumer), and the worker keeps serving.

The schema is stricter than Celery in places, on purpose: everything Celery
would parse later (dates, time limits, signatures in the body's embed) must
parse now, and sizes and nesting are bounded.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import fastjsonschema
from celery.app.task import Context
from celery.utils.time import maybe_iso8601
from jsonschema import Draft7Validator

from tasks.jobkit.schema_errors import describe

ACCEPTED_CONTENT_TYPES = ("application/json",)
ACCEPTED_ENCODINGS = ("utf-8", "utf8")
MAX_DEPTH = 64  # JSON nesting in the body: far beyond any real canvas, far below recursion
MAX_ID_CHARS = 255
ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}
NULLABLE_ID = {"anyOf": [{"type": "null"}, ID]}
TEXT = {"type": ["string", "null"], "maxLength": 100_000}
DATE = {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time",
                                      "maxLength": 64}]}
SECONDS = {"anyOf": [{"type": "null"},
                     {"type": "number", "minimum": 0, "maximum": 10 * 365 * 86400}]}
COUNT = {"type": "integer", "minimum": 0, "maximum": 1_000_000}

# The task's request (Context) gets the headers as attributes: a header named like one of
# its methods (`get`: None) made Celery's trace raise outside the task's body.
CONTEXT_METHODS = sorted(name for name, value in vars(Context).items()
                         if not name.startswith("_") and (callable(value)
                                                          or isinstance(value, property)))

# Every header Celery's worker reads (celery/app/amqp.py writes them).
HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["id", "task"],
    "properties": {
        "lang": {"type": ["string", "null"], "maxLength": 32},
        "task": {"type": "string", "minLength": 1, "maxLength": 255,
                 "pattern": r"^[A-Za-z_][A-Za-z0-9_.:-]*$"},
        "id": ID,
        "shadow": {"anyOf": [{"type": "null"}, ID]},
        "root_id": NULLABLE_ID,
        "parent_id": NULLABLE_ID,
        "group": NULLABLE_ID,
        "group_index": {"anyOf": [{"type": "null"}, COUNT]},
        "retries": {"anyOf": [{"type": "null"}, COUNT]},
        "eta": DATE,
        "expires": DATE,
        "countdown": SECONDS,
        "timelimit": {"anyOf": [
            {"type": "null"},
            {"type": "array", "minItems": 2, "maxItems": 2, "items": SECONDS}]},
        "argsrepr": TEXT,
        "kwargsrepr": TEXT,
        "origin": TEXT,
        "ignore_result": {"type": ["boolean", "null"]},
        "replaced_task_nesting": {"anyOf": [{"type": "null"}, COUNT]},
        "stamped_headers": {"anyOf": [{"type": "null"}, {
            "type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 255}}]},
        "stamps": {"type": ["object", "null"], "maxProperties": 100},
        # Ours (tasks.worker.request); a retry copies it from the request into its message.
        "delivery_count": {"anyOf": [{"type": "null"}, COUNT]},
        # Arguments kept in S3 (the claim check: tasks.submit.claim_check writes it,
        # tasks.worker.claim_check reads them back and checks size and sha256).
        "payload_ref": {"type": "object", "required": ["bucket", "key", "size", "sha256"],
                        "additionalProperties": False, "properties": {
                            "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
                            "key": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "size": {"type": "integer", "minimum": 0},
                            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
        # When the submitter sent it, epoch milliseconds (tasks.submit.publish, the POST
        # template's $context.requestTimeEpoch); the record keeps it as `submitted_at`.
        "submitted_at": {"anyOf": [{"type": "null"}, {
            "type": "integer", "minimum": 0, "maximum": 32_503_680_000_000}]},
        # A completion callback (tasks.callbacks; X-Callback-Url over HTTP). Its
        # rules (https, no private address) are checked when it is delivered.
        "callback_url": {"type": ["string", "null"], "maxLength": 2048},
    },
    # Extra headers end up in the task's request context: plain names only, and none
    # that would shadow what Celery puts there itself.
    "propertyNames": {"pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
                      "not": {"enum": ["args", "kwargs", "callbacks", "errbacks", "chain",
                                       "chord", "properties", "reply_to", "correlation_id",
                                       "hostname", "delivery_info", "is_eager",
                                       "called_directly", "utc",
                                       "headers", "request_dict", *CONTEXT_METHODS]}},
    "maxProperties": 64,
}

PROPERTIES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correlation_id": {"anyOf": [{"type": "null"}, ID]},
        "reply_to": {"type": ["string", "null"], "maxLength": 255},
        "delivery_mode": {"type": ["integer", "null"]},
        # kombu and Celery read these three (restore, retry, worker-lost handling).
        "delivery_info": {"type": ["object", "null"], "properties": {
            "exchange": {"type": ["string", "null"], "maxLength": 255},
            "routing_key": {"type": ["string", "null"], "maxLength": 255},
            "redelivered": {"type": ["boolean", "null"]}}},
        "priority": {"anyOf": [{"type": "null"},
                               {"type": "integer", "minimum": 0, "maximum": 255}]},
        "body_encoding": {"enum": ["base64", None]},
        "delivery_tag": {"type": ["string", "null"]},
    },
}

# A signature as Celery serialises it (dict(Signature)); groups and chains nest.
SIGNATURE: dict[str, Any] = {
    "type": "object",
    "required": ["task"],
    "properties": {
        "task": {"type": "string", "minLength": 1, "maxLength": 255},
        "args": {"type": "array"},
        "kwargs": {"type": "object"},
        "options": {"type": "object", "properties": {
            "task_id": NULLABLE_ID, "group_id": NULLABLE_ID, "root_id": NULLABLE_ID,
            "parent_id": NULLABLE_ID, "chord": {"anyOf": [{"type": "null"},
                                                          {"$ref": "#/definitions/sig"}]},
            "link": {"$ref": "#/definitions/sigs"},
            "link_error": {"$ref": "#/definitions/sigs"},
            "countdown": SECONDS, "eta": DATE, "expires": {"anyOf": [DATE, SECONDS]},
            "priority": {"anyOf": [{"type": "null"},
                                   {"type": "integer", "minimum": 0, "maximum": 255}]},
        }},
        "subtask_type": {"enum": [None, "group", "chain", "chord", "chunks", "xmap",
                                  "xstarmap"]},
        "immutable": {"type": "boolean"},
        "chord_size": {"anyOf": [{"type": "null"}, COUNT]},
    },
}

BODY: dict[str, Any] = {
    "definitions": {
        "sig": SIGNATURE,
        "sigs": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/sig"},
                           {"type": "array", "maxItems": 10_000,
                            "items": {"$ref": "#/definitions/sig"}}]},
    },
    "type": "array",
    "minItems": 3,
    "maxItems": 3,
    "items": [
        {"type": "array"},
        {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"}},
        {"type": ["object", "null"],
         "properties": {
             "callbacks": {"$ref": "#/definitions/sigs"},
             "errbacks": {"$ref": "#/definitions/sigs"},
             "chain": {"$ref": "#/definitions/sigs"},
             "chord": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/sig"}]},
         },
         "additionalProperties": False},
    ],
}


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
_HEADERS = Schema(HEADERS)
_PROPERTIES = Schema(PROPERTIES)
_BODY = Schema(BODY)


@dataclass(frozen=True)
class Verdict:
    """Why a message may not reach Celery; `permanent` if no worker could ever run it."""

    reason: str
    permanent: bool
    job_id: str | None
    task: str | None


def _first_error(validator: Schema, instance: Any, where: str) -> str | None:
    error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    # The record shows this reason: words from the schema, never the value (jsonschema's
    # own message quotes it, and a body holds the job's arguments).
    return describe(error, root=where)


def _scan(value: Any, *, finite: bool) -> str | None:
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


def job_identity(message: Any) -> tuple[str | None, str | None]:
    """(job id, task name) of a message when its headers carry usable ones."""
    headers = getattr(message, "headers", None)
    if not isinstance(headers, dict):
        return None, None
    job_id, task = headers.get("id"), headers.get("task")
    ok_id = job_id if _storable(job_id, MAX_ID_CHARS) else None
    ok_task = task if _storable(task, 255) else None
    return ok_id, ok_task


def _storable(value: Any, max_chars: int) -> bool:
    """A string the job record can hold (DynamoDB strings are UTF-8)."""
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The header a stand-in envelope carries (see `stand_in`): not a name a real header can
# have (HEADERS' propertyNames), so only the channel sets it.
PROBLEM_HEADER = "__envelope_problem"


def envelope_problem(payload: Any) -> str | None:
    """Why kombu could not build a message from this decoded SQS body, or None.

    Runs in the channel, before kombu's Message decodes the body: a bad envelope
    there would raise inside the event loop."""
    if not isinstance(payload, dict) or not payload:
        return "the SQS body is not a kombu JSON envelope (base64 of a JSON object)"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "envelope.properties is missing or not an object"
    if not isinstance(properties.get("delivery_info", {}), dict):
        return "envelope.properties.delivery_info is not an object"
    headers = payload.get("headers", {})
    if not isinstance(headers, dict | None):
        return "envelope.headers is not an object"
    if headers and headers.get("compression") is not None:
        # kombu would decompress the body before the gate sees it, and Celery deletes a
        # message that fails to decompress without a record. JSON is never compressed here.
        return "envelope.headers.compression is not accepted (bodies are plain JSON)"
    for key in ("content-type", "content-encoding"):
        if not isinstance(payload.get(key), str):
            return f"envelope.{key} is missing or not a string"
    body = payload.get("body")
    if not isinstance(body, str):
        return "envelope.body is missing or not a string"
    encoding = properties.get("body_encoding")
    if encoding not in (None, "base64"):
        return f"envelope.properties.body_encoding {encoding!r} is not accepted (only base64)"
    if encoding == "base64":
        try:
            base64.b64decode(body.encode("ascii"), validate=True).decode("utf-8")
        except (ValueError, UnicodeError) as exc:
            return f"envelope.body is not base64 of UTF-8 text: {str(exc)[:200]}"
    else:
        try:
            body.encode("utf-8")  # what kombu's Message does; a failure there is not recorded
        except UnicodeEncodeError:
            return "envelope.body is not UTF-8 text (it holds a lone surrogate)"
    return None


def stand_in(payload: Any, problem: str, raw_message: dict, queue_url: str) -> dict:
    """An envelope kombu can build a message from, that the gate then rejects."""
    headers = payload.get("headers") if isinstance(payload, dict) else None
    identity = {}
    if isinstance(headers, dict):
        identity = {k: headers[k] for k in ("id", "task") if isinstance(headers.get(k), str)}
    return {
        "body": "", "content-type": "application/json", "content-encoding": "utf-8",
        "headers": {**identity, PROBLEM_HEADER: problem},
        "properties": {"delivery_info": {"sqs_message": raw_message, "sqs_queue": queue_url},
                       "delivery_tag": raw_message.get("ReceiptHandle")},
    }


def check(message: Any, registered: Any) -> Verdict | None:
    """None when Celery may be given this kombu message, else the verdict saying why not."""
    job_id, task = job_identity(message)

    def refuse(reason: str, permanent: bool = True) -> Verdict:
        return Verdict(reason, permanent, job_id, task)

    headers = getattr(message, "headers", None)
    if isinstance(headers, dict) and isinstance(headers.get(PROBLEM_HEADER), str):
        return refuse(headers[PROBLEM_HEADER])
    if not isinstance(headers, dict):
        return refuse("message has no headers (not a Celery protocol v2 message)")
    # Headers and properties become the request that is pickled for the pool, in the
    # event loop: nested too deep, pickling raises there and stops the worker. (Checked
    # first: the schema's error messages repr() the value.)
    properties = getattr(message, "properties", None)
    for where, value in (("headers", headers), ("properties", properties)):
        found = _scan(value, finite=False)
        if found == "deep":
            return refuse(f"{where} nest deeper than {MAX_DEPTH} levels")
        if found == "surrogate":
            return refuse(f"{where} hold a string that is not Unicode (a lone surrogate)")
    problem = _first_error(_HEADERS, headers, "headers")
    if problem:
        return refuse(problem)
    if properties is not None:
        problem = _first_error(_PROPERTIES, properties, "properties")
        if problem:
            return refuse(problem)
    content_type = getattr(message, "content_type", None)
    if content_type not in ACCEPTED_CONTENT_TYPES:
        return refuse(f"content-type {content_type!r} is not accepted (only application/json)")
    encoding = getattr(message, "content_encoding", None)
    if str(encoding).lower() not in ACCEPTED_ENCODINGS:
        return refuse(f"content-encoding {encoding!r} is not accepted (only utf-8)")
    body = getattr(message, "body", None)
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if not isinstance(text, str):
            return refuse("body is not text")
        payload = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return refuse(f"body is not JSON: {str(exc)[:200]}")
    found = _scan(payload, finite=True)
    if found == "deep":
        return refuse(f"body nests deeper than {MAX_DEPTH} levels")
    if found == "nonfinite":
        return refuse("body holds a number that is not finite (NaN or Infinity)")
    if found == "surrogate":
        return refuse("body holds a string that is not Unicode (a lone surrogate)")
    problem = _first_error(_BODY, payload, "body")
    if problem:
        return refuse(f"body must be the JSON array [args, kwargs, embed] ({problem})")
    if headers["task"] not in registered:
        # Not permanent: during a rolling deploy another worker may know it.
        return refuse(f"unknown task {headers['task']!r}: no such task is registered on "
                      "this worker", permanent=False)
    return None
