"""The message gate: every field of Celery protocol v2 checked before Celery sees a message.

Stock Celery stops the whole worker on some malformed messages (a body without its third
element, `headers.timelimit` that is not a pair, an ETA that is not a date...), some in the
consumer, some later inside billiard's pool maintenance, and the message then returns
after the visibility timeout and stops the next worker. The gate checks a message against
one declarative schema of the protocol (`protocol`: HEADERS, PROPERTIES, BODY), and Celery
is given only messages that pass: a message that fails is recorded and left to SQS's
redrive policy (tasks.worker.consumer), and the worker keeps serving.

`protocol` the schema, `schema` the validators and the walk for what JSON Schema cannot
say, `envelope` the SQS body before kombu reads it, `check` the decision, `middleware`
the gate as the worker's first middleware (MessageGate).
"""

from tasks.worker.gate.check import _BODY, _HEADERS, _PROPERTIES, check, job_identity
from tasks.worker.gate.envelope import PROBLEM_HEADER, envelope_problem, stand_in
from tasks.worker.gate.protocol import (
    ACCEPTED_CONTENT_TYPES,
    ACCEPTED_ENCODINGS,
    BODY,
    CONTEXT_METHODS,
    HEADERS,
    MAX_DEPTH,
    MAX_ID_CHARS,
    PROPERTIES,
    SIGNATURE,
)
from tasks.worker.gate.schema import Schema, cheaper_to_run, first_error, scan
from tasks.worker.middleware.base import Verdict

__all__ = [
    "ACCEPTED_CONTENT_TYPES",
    "ACCEPTED_ENCODINGS",
    "BODY",
    "CONTEXT_METHODS",
    "HEADERS",
    "MAX_DEPTH",
    "MAX_ID_CHARS",
    "PROBLEM_HEADER",
    "PROPERTIES",
    "SIGNATURE",
    "_BODY",
    "_HEADERS",
    "_PROPERTIES",
    "Schema",
    "Verdict",
    "cheaper_to_run",
    "check",
    "envelope_problem",
    "first_error",
    "job_identity",
    "scan",
    "stand_in",
]
