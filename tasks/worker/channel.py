"""kombu's SQS channel, made to survive endpoint faults and to hand messages back at once.

Two behaviours of kombu 5.7's SQS transport that this project cannot live with,
each a mixin so it composes with other Channel subclasses:

* `HandBackAtOnce`: kombu hands an unacknowledged message back (warm shutdown,
  a pool process that died) by hiding it for `wait_time_seconds`. We make it
  visible at once (VisibilityTimeout 0) so another worker can start it now.
* `SurviveReceiveErrors`: the long poll (ReceiveMessage) runs on kombu's own
  async HTTP client, without botocore's retries. A throttling answer (HTTP 4xx)
  raises a bare Exception and a 5xx answer makes kombu parse `[]` as a
  response; either escapes into the event loop and stops the worker
  ("Unrecoverable error"). We log it and poll again after a short backoff.

Used through tasks.worker.transport, which adds batching.
"""

from __future__ import annotations

import logging
import random

from botocore.config import Config
from vine import ensure_promise, promise

from tasks.celery_config import settings_of
from tasks.celery_private import (
    SQSChannel,
    SQSTransport,
    channel_async_client,
    channel_hub,
    channel_queue_name,
)
from tasks.ops.clients import sqs_client
from tasks.worker import gate, liveness, scheduled
from tasks.worker.sqs_io import sqs_io

log = logging.getLogger(__name__)

MAX_RECEIVE_BACKOFF = 10.0


def receive_backoff(failures: int) -> float:
    """Full jitter over a capped exponential: 0.5 s, 1 s, 2 s... up to 10 s."""
    return random.uniform(0.1, min(0.5 * 2 ** max(failures - 1, 0), MAX_RECEIVE_BACKOFF))


class HandBackAtOnce:
    def _put(self, queue, message, **kwargs):
        if not message.get("redelivered"):
            return super()._put(queue, message, **kwargs)
        receipt = message["properties"]["delivery_tag"]
        sqs_io(settings_of(self.transport_options)).hand_back(
            [(self._new_queue(queue), receipt)], wait=True
        )
        return None


class SurviveReceiveErrors:
    _receive_failures = 0

    def _get_async(self, queue, count=1, callback=None):
        callback = ensure_promise(callback)
        q_url = self._new_queue(queue)
        qname = channel_queue_name(self, queue)

        def received(response):
            if not isinstance(response, dict):
                # kombu turns a 5xx or a timeout into [] instead of a response: a
                # failure like any other, or a 5xx storm would spin this loop.
                return failed(RuntimeError(f"no response from SQS ({response!r})"))
            self._receive_failures = 0
            liveness.mark("receive")
            return callback(self._on_messages_ready(q_url, queue, response))

        def failed(*args):
            exc = args[-1] if args else None
            self._receive_failures += 1
            delay = receive_backoff(self._receive_failures)
            log.warning("receiving from %s failed (%s); polling again in %.1f s", qname, exc, delay)
            # Resume kombu's polling loop as after an empty poll.
            channel_hub(self).call_later(delay, callback, 0)

        return self._get_from_sqs(
            queue_name=qname,
            queue_url=q_url,
            count=count,
            connection=channel_async_client(self, qname),
            callback=promise(received, on_error=failed),
        )


class ClientsFromSettings:
    """kombu's boto3 client, made by our client factory from Settings.

    kombu builds it from the broker URL and boto3's environment; we give it the
    endpoint and credentials of tasks.ops.settings explicitly, so nothing needs
    to be written into os.environ for the emulator.
    """

    def new_sqs_client(self, region, access_key_id, secret_access_key, session_token=None):
        config = Config(**(self.transport_options.get("client-config") or {}))
        return sqs_client(settings_of(self.transport_options), config=config)


class EnvelopeGate:
    """kombu's parsing of an SQS body, made unable to raise.

    kombu decodes the base64 SQS body, parses the JSON envelope and decodes its
    body inside the event loop; a body that is not base64, nests too deep, or
    holds the wrong types there would stop the worker. A body that fails
    tasks.worker.gate.envelope_problem becomes a stand-in the gate rejects. A scheduled
    message (tasks.worker.scheduled) is turned into the envelope first."""

    def _message_to_python(self, message, queue_name, q_url):
        try:
            # EventBridge Scheduler's JSON form becomes the envelope delay() would write.
            parsed = scheduled.looks_scheduled(message.get("Body"))
            if parsed is not None:
                message, problem = scheduled.as_kombu_message(message, parsed, queue_name)
                if problem is not None:
                    return gate.stand_in(
                        {"headers": scheduled.identity(parsed)}, problem, message, q_url
                    )
            payload = super()._message_to_python(message, queue_name, q_url)
            problem = gate.envelope_problem(payload)
        except Exception as exc:  # RecursionError, UnicodeDecodeError, ...
            payload, problem = None, f"the SQS body cannot be read: {type(exc).__name__}"
        if problem is None:
            # kombu picks the SQS client for a reject or a restore by this name; one the
            # sender made up (not a predefined queue, not a string) raised inside the
            # event loop and stopped the worker. The message came from this queue.
            payload["properties"]["delivery_info"]["routing_key"] = queue_name
            return payload
        return gate.stand_in(payload, problem, message, q_url)


class Channel(EnvelopeGate, ClientsFromSettings, HandBackAtOnce, SurviveReceiveErrors, SQSChannel):
    pass


class Transport(SQSTransport):
    Channel = Channel
