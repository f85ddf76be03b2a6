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

Selected by `broker_transport = "tasks.sqs_channel:Transport"` in celeryconfig.
"""

from __future__ import annotations

import logging

from kombu.transport import SQS
from vine import ensure_promise, promise

log = logging.getLogger(__name__)

MAX_RECEIVE_BACKOFF = 10.0


class HandBackAtOnce:
    def _put(self, queue, message, **kwargs):
        if not message.get("redelivered"):
            return super()._put(queue, message, **kwargs)
        receipt = message["properties"]["delivery_tag"]
        self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
            QueueUrl=self._new_queue(queue), ReceiptHandle=receipt, VisibilityTimeout=0
        )
        return None


class SurviveReceiveErrors:
    _receive_failures = 0

    def _get_async(self, queue, count=1, callback=None):
        callback = ensure_promise(callback)
        q_url = self._new_queue(queue)
        qname = self.canonical_queue_name(queue)

        def received(response):
            self._receive_failures = 0
            # kombu turns a 5xx or a timeout into [] instead of a response.
            messages = response if isinstance(response, dict) else {}
            return callback(self._on_messages_ready(q_url, queue, messages))

        def failed(*args):
            exc = args[-1] if args else None
            self._receive_failures += 1
            delay = min(0.5 * 2 ** (self._receive_failures - 1), MAX_RECEIVE_BACKOFF)
            log.warning("receiving from %s failed (%s); polling again in %.1f s",
                        qname, exc, delay)
            # Resume kombu's polling loop as after an empty poll.
            self.hub.call_later(delay, callback, 0)

        return self._get_from_sqs(
            queue_name=qname, queue_url=q_url, count=count,
            connection=self.asynsqs(queue=qname),
            callback=promise(received, on_error=failed),
        )


class Channel(HandBackAtOnce, SurviveReceiveErrors, SQS.Channel):
    pass


class Transport(SQS.Transport):
    Channel = Channel
