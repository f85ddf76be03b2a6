"""The worker's half of the claim check: arguments a message refers to, read back from S3.

A message with the `payload_ref` header (tasks.submit.claim_check) carries empty
arguments; the ClaimCheck middleware gives the real ones (its `message_body` hook, which
SQSRequest, tasks.worker.request, calls when Celery builds the request), before the pool
runs the job and before the job's schema check (tasks.jobkit.registry binds and validates
the arguments it is called with).

A reference that names another bucket or prefix, an object that is gone, or one whose size
or sha256 differ raises PayloadUnavailable: the consumer (tasks.worker.consumer) rejects
the message as it rejects a malformed one (RETRY with the reason, FAILURE on the last
receive), and the worker keeps serving. This is one GetObject on the consumer's loop, for
messages that carry a reference only.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.ops.provision import PAYLOADS_PREFIX
from tasks.ops.settings import Settings
from tasks.results.large_objects import ObjectRef, StoredObjectError, load_payload
from tasks.worker.middleware.base import Middleware

HEADER = "payload_ref"


class PayloadUnavailable(Exception):
    """The arguments a message refers to cannot be read (the message is rejected)."""


def claimed_body(headers: dict[str, Any], payload: Any, settings: Settings) -> tuple | None:
    """`(args, kwargs, embed)` with the stored arguments, or None without a reference."""
    raw = headers.get(HEADER)
    if raw is None:
        return None
    try:
        ref = ObjectRef.from_header(raw)
        if ref.bucket != settings.bucket_name or not ref.key.startswith(PAYLOADS_PREFIX):
            raise StoredObjectError(
                f"payload_ref names s3://{ref.bucket}/{ref.key}, not this deployment's "
                f"s3://{settings.bucket_name}/{PAYLOADS_PREFIX}..."
            )
        if ref.sha256 is None:
            raise StoredObjectError("payload_ref has no sha256")
        from tasks.ops.clients import s3_client

        args, kwargs = load_payload(s3_client(settings), ref)
    except StoredObjectError as exc:
        raise PayloadUnavailable(f"the job's arguments cannot be read: {exc}") from exc
    except (ClientError, BotoCoreError) as exc:
        raise PayloadUnavailable(f"the job's arguments could not be fetched: {exc}") from exc
    embed = payload[2] if isinstance(payload, list | tuple) and len(payload) == 3 else {}
    return args, kwargs, embed


class ClaimCheck(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # the app's (tasks.worker.default_middleware)

    def message_body(self, message: Any, headers: dict[str, Any]) -> tuple | None:
        if HEADER not in headers:
            return None
        return claimed_body(headers, message.payload, self.settings)
