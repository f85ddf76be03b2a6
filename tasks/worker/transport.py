"""The project's SQS transport: adaptive batched receives, batched acknowledgements.

`Channel` is tasks.worker.channel's (gate on the envelope, clients from Settings,
hand-back at once, surviving receive errors) plus `AdaptiveBatches`. Select it
with `broker_transport = "tasks.worker.transport:Transport"`; the URL stays `sqs://`.

Acknowledging: an acknowledged message's receipt goes to tasks.worker.sqs_io,
which deletes it with DeleteMessageBatch within `ack_flush_interval` seconds (1.0
by default), at once when 10 wait, and on every exit path. Its prefetch slot is
freed at the ack. The price of the window: a job acknowledged in the last second
before a hard kill may run twice, which SQS's at-least-once delivery allows anyway.

Receiving adapts by itself, with no setting:
* jobs are long, or the queue has no backlog: Celery's prefetch (one message per
  process by default) and a receive as soon as a process is free, so no job waits
  behind another;
* jobs are short (a worker finishes one every SHORT_JOB_SECONDS / concurrency or
  faster) and the last receive came back full (a backlog): the channel allows
  two batches (2 x RECEIVE_BATCH) more messages in flight and receives again
  when a whole batch of slots is free, so one batch is always waiting while
  the next is fetched, or at once when a process would otherwise wait. One
  ReceiveMessage then brings 10 jobs instead of one or two.
A reserved message waits at most about 2 x RECEIVE_BATCH short jobs, and the
visibility heartbeat holds it meanwhile.

Without an event loop (a producer, `celery call`), acks delete at once, as kombu does.
"""

from __future__ import annotations

import logging
import threading
import time

from tasks.celery_config import settings_of
from tasks.celery_private import (
    SQSTransport,
    VirtualChannel,
    channel_hub,
    channel_is_consuming,
    delivery_info,
    loop_thread,
    qos_free,
    qos_prefetch,
    set_qos_prefetch,
)
from tasks.worker import channel as sqs_channel
from tasks.worker.sqs_io import sqs_io

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 1.0
RECEIVE_BATCH = 10  # SQS's most per ReceiveMessage
# A job shorter than this counts as short: RECEIVE_BATCH of them wait at most ~10 s.
SHORT_JOB_SECONDS = 1.0
EWMA_WEIGHT = 0.2
# A slot freed by any path other than ack/reject is noticed within this many seconds.
WAKE_CHECK_INTERVAL = 1.0


class AdaptiveBatches:
    """Mixin over kombu's SQS Channel: receive in batches when it pays, delete in batches."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ack_flush_interval = float(
            self.transport_options.get("ack_flush_interval", DEFAULT_FLUSH_INTERVAL)
        )
        self._waiting_queues: set[str] = set()
        self._base_prefetch = 0  # what Celery asked for (concurrency x multiplier)
        self._job_seconds: float | None = None  # EWMA of time per job, per process
        self._last_ack: float | None = None
        self._backlog = False
        self.batched = False

    # --- deciding the mode -------------------------------------------------------------
    def basic_qos(self, prefetch_size=0, prefetch_count=0, apply_global=False):
        self._base_prefetch = prefetch_count or 0
        result = super().basic_qos(prefetch_size, prefetch_count, apply_global)
        self._apply_mode()
        return result

    def _apply_mode(self) -> None:
        base = self._base_prefetch
        if not base:
            return
        short = self._job_seconds is not None and self._job_seconds < SHORT_JOB_SECONDS
        batched = short and self._backlog
        if batched != self.batched:
            log.info(
                "receiving in %s (time per job %.3f s, backlog %s)",
                "batches of 10" if batched else "ones",
                self._job_seconds or 0,
                self._backlog,
            )
        self.batched = batched
        set_qos_prefetch(self, base + 2 * RECEIVE_BATCH if batched else base)

    def note_received(self, requested: int, got: int) -> None:
        self._backlog = requested > 0 and got >= min(requested, RECEIVE_BATCH)
        self._apply_mode()

    def _note_ack(self) -> None:
        now = time.monotonic()
        if self._last_ack is not None:
            per_job = (now - self._last_ack) * max(self._base_prefetch, 1)
            self._job_seconds = (
                per_job
                if self._job_seconds is None
                else ((1 - EWMA_WEIGHT) * self._job_seconds + EWMA_WEIGHT * per_job)
            )
        self._last_ack = now

    def _batch_ready(self) -> bool:
        """True if a receive now is worth it: a process would wait, or a batch is free."""
        prefetch = qos_prefetch(self)
        if not prefetch:
            return True
        free = qos_free(self)
        if free <= 0:
            return False
        if not self.batched:
            return True
        held = prefetch - free
        return held < self._base_prefetch or free >= RECEIVE_BATCH

    # --- receiving --------------------------------------------------------------------
    def _schedule_queue(self, queue):
        if (
            channel_is_consuming(self, queue)
            and channel_hub(self) is not None
            and not self._batch_ready()
        ):
            if not self._waiting_queues:
                channel_hub(self).call_later(WAKE_CHECK_INTERVAL, self._wake_check)
            self._waiting_queues.add(queue)
            return
        super()._schedule_queue(queue)

    def _on_messages_ready(self, queue, qname, messages):
        got = super()._on_messages_ready(queue, qname, messages)
        self.note_received(self._requested, got or 0)
        return got

    _requested = 0

    def _get_from_sqs(self, queue_name, queue_url, connection, count=1, callback=None):
        self._requested = count
        return super()._get_from_sqs(
            queue_name, queue_url, connection, count=count, callback=callback
        )

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == loop_thread(channel_hub(self))

    def _wake(self) -> None:
        if self._waiting_queues and self._batch_ready():
            queues, self._waiting_queues = self._waiting_queues, set()
            # kombu's hub runs a call_soon() made on its own thread only after its next
            # poll returns (up to a timer's delay, about 0.4 s on an idle worker), which
            # is what holds a worker with one process near 3 jobs/s: receive right away.
            on_loop = self._on_loop_thread()
            for queue in queues:
                if on_loop:
                    self._schedule_queue(queue)
                else:
                    channel_hub(self).call_soon(self._schedule_queue, queue)

    def _wake_check(self) -> None:
        self._wake()
        if self._waiting_queues:
            channel_hub(self).call_later(WAKE_CHECK_INTERVAL, self._wake_check)

    def basic_reject(self, delivery_tag, requeue=False):
        try:
            return super().basic_reject(delivery_tag, requeue=requeue)
        finally:
            if channel_hub(self) is not None:
                self._wake()

    # --- acknowledging: DeleteMessageBatch through tasks.worker.sqs_io -------------
    def basic_ack(self, delivery_tag, multiple=False):
        if channel_hub(self) is None or self.ack_flush_interval <= 0:
            return super().basic_ack(delivery_tag, multiple=multiple)
        try:
            info = delivery_info(self, delivery_tag)
            receipt = info["sqs_message"]["ReceiptHandle"]
            queue_url = info["sqs_queue"]
        except KeyError:
            return super().basic_ack(delivery_tag, multiple=multiple)
        sqs_io(settings_of(self.transport_options)).ack(queue_url, receipt)
        # The job is finished and recorded: free its prefetch slot now.
        VirtualChannel.basic_ack(self, delivery_tag)
        self._note_ack()
        self._apply_mode()
        self._wake()

    def flush_acks(self) -> None:
        """Delete every acknowledged message now."""
        sqs_io(settings_of(self.transport_options)).flush()

    def close(self):
        try:
            self.flush_acks()
        finally:
            super().close()


class Channel(AdaptiveBatches, sqs_channel.Channel):
    pass


class Transport(SQSTransport):
    Channel = Channel
