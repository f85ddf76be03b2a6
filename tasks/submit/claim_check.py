"""Arguments too large for one SQS message go to S3; the message carries a reference.

`delay()` builds the message in `app.amqp.as_task_v2`, and kombu's SQS transport sends
base64 of a JSON envelope holding base64 of the JSON body `[args, kwargs, embed]`: about
16/9 of the arguments' JSON, plus the headers. When that would be over the queue's limit
(tasks.ops.provision.MAX_MESSAGE_BYTES), the JSON `[args, kwargs]` is stored at
`payloads/<task_id>.json` (tasks.results.large_objects), the body keeps empty arguments,
and `headers["payload_ref"]` = {bucket, key, size, sha256} says where they are; the worker
reads them back before the job starts (tasks.worker.claim_check).

Why an AMQP subclass and not a `before_task_publish` step (tasks.submit.publish): the
signal gets the body as the tuple `(args, kwargs, embed)`, which cannot be replaced, and
editing `args`/`kwargs` in place would change the caller's own list and dict. `as_task_v2`
returns the message before anything is serialised, and `Celery(amqp=...)` is the
documented way to give an app its own AMQP class. argsrepr/kwargsrepr stay Celery's
(cut at 1,024 characters), so the record and the logs stay small.
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar
from typing import Any

from kombu.utils.json import dumps

from tasks.celery_private import AMQP
from tasks.ops.provision import MAX_MESSAGE_BYTES
from tasks.ops.settings import Settings

log = logging.getLogger(__name__)

# Headers added after as_task_v2 (before_task_publish steps: submitted_at, callback_url)
# and what kombu's transport adds (delivery_info, delivery_tag...), with room to spare.
PUBLISH_SLACK_BYTES = 8_192
_ROUTING_KEY = "q" * 80  # SQS queue names have at most 80 characters
HEADER = "payload_ref"
# (task id, reference) of the message as_task_v2 just claim-checked in this context: Celery
# merges the options' headers over the message's afterwards, and a retry's options carry the
# request's headers, so an old payload_ref would otherwise replace (or outlive) the new one.
_made: ContextVar[tuple[str, dict] | None] = ContextVar("claim_checked", default=None)


def b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def sqs_message_bytes(headers: dict[str, Any], properties: dict[str, Any], body: Any) -> int:
    """The size of the SQS message kombu's transport would send for this task message.

    Built as kombu builds it (virtual.Channel.prepare_message, then the SQS channel's
    `_put`): base64(JSON envelope) whose `body` is base64 of the JSON body."""
    data = dumps(body).encode("utf-8")
    envelope = {
        "body": "A" * b64_len(len(data)),  # base64 is ASCII: only its length matters
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "body_encoding": "base64",
            "priority": 0,
            "delivery_mode": 2,
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": _ROUTING_KEY},
        },
    }
    return b64_len(len(dumps(envelope).encode("utf-8")))


def fits_one_message(headers: dict[str, Any], properties: dict[str, Any], body: Any) -> bool:
    return sqs_message_bytes(headers, properties, body) + PUBLISH_SLACK_BYTES <= MAX_MESSAGE_BYTES


def claim_check(message: Any, settings: Settings | None = None) -> Any:
    """The task message as it is, or with its arguments in S3 when it would not fit."""
    headers, properties, body = message.headers, message.properties, message.body
    _made.set(None)
    if fits_one_message(headers, properties, body):
        return message
    from tasks.ops.clients import s3_client
    from tasks.results.large_objects import store_payload

    args, kwargs, embed = body
    settings = settings or Settings.from_env()
    ref = store_payload(s3_client(settings), settings.bucket_name, headers["id"], args, kwargs)
    log.info(
        "task %s: %d bytes of arguments stored at s3://%s/%s",
        headers["id"],
        ref.size,
        ref.bucket,
        ref.key,
    )
    headers[HEADER] = ref.as_header()
    _made.set((headers["id"], headers[HEADER]))
    return message._replace(body=((), {}, embed))


def only_this_messages_payload_ref(
    body: Any, headers: dict[str, Any], properties: dict[str, Any]
) -> None:
    """A publish step (tasks.submit.publish): the message carries `payload_ref` if and only
    if as_task_v2 stored its arguments just now. A retry inherits the header from its request
    (Celery copies custom headers), with arguments that are in the body again, or stored anew."""
    made = _made.get()
    if made is not None and made[0] == headers.get("id"):
        headers[HEADER] = made[1]
    else:
        headers.pop(HEADER, None)
    _made.set(None)


class ClaimCheckAMQP(AMQP):
    """`Celery(amqp="tasks.submit.claim_check:ClaimCheckAMQP")`: both apps use it."""

    def as_task_v2(self, task_id, name, *args, **kwargs):
        return claim_check(
            super().as_task_v2(task_id, name, *args, **kwargs), Settings.of(self.app)
        )
