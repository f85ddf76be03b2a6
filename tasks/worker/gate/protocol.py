"""Celery protocol v2 as the message gate accepts it: one declarative schema (JSON Schema).

`HEADERS`, `PROPERTIES` and `BODY` name every field Celery's worker reads (celery/app/amqp.py
writes them). The schema is stricter than Celery in places, on purpose: everything Celery
would parse later (dates, time limits, signatures in the body's embed) must parse now, and
sizes and nesting are bounded.
"""

from __future__ import annotations

from typing import Any

from tasks.celery_private import context_method_names

ACCEPTED_CONTENT_TYPES = ("application/json",)
ACCEPTED_ENCODINGS = ("utf-8", "utf8")
MAX_DEPTH = 64  # JSON nesting in the body: far beyond any real canvas, far below recursion
MAX_ID_CHARS = 255
ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}
NULLABLE_ID = {"anyOf": [{"type": "null"}, ID]}
TEXT = {"type": ["string", "null"], "maxLength": 100_000}
DATE = {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time", "maxLength": 64}]}
SECONDS = {
    "anyOf": [{"type": "null"}, {"type": "number", "minimum": 0, "maximum": 10 * 365 * 86400}]
}
COUNT = {"type": "integer", "minimum": 0, "maximum": 1_000_000}

# The task's request (Context) gets the headers as attributes: a header named like one of
# its methods (`get`: None) made Celery's trace raise outside the task's body.
CONTEXT_METHODS = context_method_names()

# Every header Celery's worker reads (celery/app/amqp.py writes them).
HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["id", "task"],
    "properties": {
        "lang": {"type": ["string", "null"], "maxLength": 32},
        "task": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
        },
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
        "timelimit": {
            "anyOf": [
                {"type": "null"},
                {"type": "array", "minItems": 2, "maxItems": 2, "items": SECONDS},
            ]
        },
        "argsrepr": TEXT,
        "kwargsrepr": TEXT,
        "origin": TEXT,
        "ignore_result": {"type": ["boolean", "null"]},
        "replaced_task_nesting": {"anyOf": [{"type": "null"}, COUNT]},
        "stamped_headers": {
            "anyOf": [
                {"type": "null"},
                {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 255}},
            ]
        },
        "stamps": {"type": ["object", "null"], "maxProperties": 100},
        # Ours (tasks.worker.request); a retry copies it from the request into its message.
        "delivery_count": {"anyOf": [{"type": "null"}, COUNT]},
        # Arguments kept in S3 (the claim check: tasks.submit.claim_check writes it,
        # tasks.worker.claim_check reads them back and checks size and sha256).
        "payload_ref": {
            "type": "object",
            "required": ["bucket", "key", "size", "sha256"],
            "additionalProperties": False,
            "properties": {
                "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
                "key": {"type": "string", "minLength": 1, "maxLength": 1024},
                "size": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
        # When the submitter sent it, epoch milliseconds (tasks.submit.publish, the POST
        # template's $context.requestTimeEpoch); the record keeps it as `submitted_at`.
        "submitted_at": {
            "anyOf": [
                {"type": "null"},
                {"type": "integer", "minimum": 0, "maximum": 32_503_680_000_000},
            ]
        },
        # A completion callback (tasks.callbacks; X-Callback-Url over HTTP). Its
        # rules (https, no private address) are checked when it is delivered.
        "callback_url": {"type": ["string", "null"], "maxLength": 2048},
    },
    # Extra headers end up in the task's request context: plain names only, and none
    # that would shadow what Celery puts there itself.
    "propertyNames": {
        "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        "not": {
            "enum": [
                "args",
                "kwargs",
                "callbacks",
                "errbacks",
                "chain",
                "chord",
                "properties",
                "reply_to",
                "correlation_id",
                "hostname",
                "delivery_info",
                "is_eager",
                "called_directly",
                "utc",
                "headers",
                "request_dict",
                *CONTEXT_METHODS,
            ]
        },
    },
    "maxProperties": 64,
}

PROPERTIES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correlation_id": {"anyOf": [{"type": "null"}, ID]},
        "reply_to": {"type": ["string", "null"], "maxLength": 255},
        "delivery_mode": {"type": ["integer", "null"]},
        # kombu and Celery read these three (restore, retry, worker-lost handling).
        "delivery_info": {
            "type": ["object", "null"],
            "properties": {
                "exchange": {"type": ["string", "null"], "maxLength": 255},
                "routing_key": {"type": ["string", "null"], "maxLength": 255},
                "redelivered": {"type": ["boolean", "null"]},
            },
        },
        "priority": {
            "anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0, "maximum": 255}]
        },
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
        "options": {
            "type": "object",
            "properties": {
                "task_id": NULLABLE_ID,
                "group_id": NULLABLE_ID,
                "root_id": NULLABLE_ID,
                "parent_id": NULLABLE_ID,
                "chord": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/sig"}]},
                "link": {"$ref": "#/definitions/sigs"},
                "link_error": {"$ref": "#/definitions/sigs"},
                "countdown": SECONDS,
                "eta": DATE,
                "expires": {"anyOf": [DATE, SECONDS]},
                "priority": {
                    "anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0, "maximum": 255}]
                },
            },
        },
        "subtask_type": {"enum": [None, "group", "chain", "chord", "chunks", "xmap", "xstarmap"]},
        "immutable": {"type": "boolean"},
        "chord_size": {"anyOf": [{"type": "null"}, COUNT]},
    },
}

BODY: dict[str, Any] = {
    "definitions": {
        "sig": SIGNATURE,
        "sigs": {
            "anyOf": [
                {"type": "null"},
                {"$ref": "#/definitions/sig"},
                {"type": "array", "maxItems": 10_000, "items": {"$ref": "#/definitions/sig"}},
            ]
        },
    },
    "type": "array",
    "minItems": 3,
    "maxItems": 3,
    "items": [
        {"type": "array"},
        {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"}},
        {
            "type": ["object", "null"],
            "properties": {
                "callbacks": {"$ref": "#/definitions/sigs"},
                "errbacks": {"$ref": "#/definitions/sigs"},
                "chain": {"$ref": "#/definitions/sigs"},
                "chord": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/sig"}]},
            },
            "additionalProperties": False,
        },
    ],
}
