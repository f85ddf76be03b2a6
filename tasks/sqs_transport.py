"""The project's SQS channel with batched receives and DeleteMessageBatch acknowledgements.

`Channel` is tasks.sqs_channel's (hand-back at once, surviving receive errors) plus
`BatchedAcks`. Select it with `broker_transport = "tasks.sqs_transport:Transport"`; the
broker URL stays `sqs://`.

Acknowledging: an acknowledged message is deleted within `ack_flush_interval` seconds
(transport option, default 1.0), at once when 10 wait for the same queue, and when the
channel closes (warm shutdown, reconnect). Its prefetch slot is freed at the ack.
Nothing is lost when a delete fails: an entry SQS refuses, a failed call or a worker
killed before the flush only means the message is received again after its visibility
timeout, and the job's record is already terminal (conditional writes keep it so). The
price of the window: a job acknowledged in the last `ack_flush_interval` before a hard
kill may run twice, which SQS's at-least-once delivery allows anyway.

Receiving: while jobs run, the channel receives again only once `receive_batch`
(transport option, default 10) prefetch slots are free, instead of kombu's one receive
per freed slot; an idle worker long-polls for whatever comes. A prefetch count of about
twice the batch (worker_prefetch_multiplier * concurrency ~ 20) keeps the pool fed while
the next batch is fetched; with a prefetch of 1 only the deletes are batched.

Without an event loop (a producer, `celery call`), acks delete at once, as kombu does.
"""

from __future__ import annotations

import logging
import threading

from botocore.exceptions import BotoCoreError, ClientError
from kombu.transport import SQS
from kombu.transport.virtual import Channel as VirtualChannel

from tasks import sqs_channel

log = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10
DEFAULT_FLUSH_INTERVAL = 1.0
# While jobs run, wait until this many prefetch slots are free before receiving again.
DEFAULT_RECEIVE_BATCH = 10
# A slot freed by any path other than ack/reject is noticed within this many seconds.
WAKE_CHECK_INTERVAL = 1.0


class BatchedAcks:
    """Mixin over kombu's SQS Channel: receive in batches, delete in batches."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (queue name, queue url) -> receipt handles acknowledged but not yet deleted
        self._acked: dict[tuple[str | None, str], list[str]] = {}
        self._acked_lock = threading.Lock()
        self._flush_timer = None
        self.ack_flush_interval = float(
            self.transport_options.get("ack_flush_interval", DEFAULT_FLUSH_INTERVAL))
        self.receive_batch = int(
            self.transport_options.get("receive_batch", DEFAULT_RECEIVE_BATCH))
        self._waiting_queues: set[str] = set()

    # --- receiving: ask for a full batch while busy -----------------------------------
    def _batch_ready(self) -> bool:
        """True if a receive now is worth it: the worker is idle, or enough slots are free.

        kombu receives as soon as one prefetch slot frees, so a busy worker makes about
        one ReceiveMessage per job. Waiting for `receive_batch` free slots (with a
        prefetch of twice that, the pool never runs dry) makes it about 0.1.
        """
        prefetch = self.qos.prefetch_count
        if not prefetch:
            return True
        free = self.qos.can_consume_max_estimate() or 0
        # With a batch of 1 this is "a slot is free": kombu's own rule, but a full
        # worker now waits for _wake() at the ack instead of kombu's delayed retry.
        return free >= prefetch or free >= min(max(self.receive_batch, 1), prefetch)

    def _schedule_queue(self, queue):
        if queue in self._active_queues and self.hub is not None and not self._batch_ready():
            if not self._waiting_queues:
                self.hub.call_later(WAKE_CHECK_INTERVAL, self._wake_check)
            self._waiting_queues.add(queue)
            return
        super()._schedule_queue(queue)

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == getattr(self.hub, "_loop_thread", None)

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
                    self.hub.call_soon(self._schedule_queue, queue)

    def _wake_check(self) -> None:
        self._wake()
        if self._waiting_queues:
            self.hub.call_later(WAKE_CHECK_INTERVAL, self._wake_check)

    def basic_reject(self, delivery_tag, requeue=False):
        try:
            return super().basic_reject(delivery_tag, requeue=requeue)
        finally:
            if self.hub is not None:
                self._wake()

    # --- acknowledging: DeleteMessageBatch ------------------------------------------

    def basic_ack(self, delivery_tag, multiple=False):
        if self.hub is None or self.ack_flush_interval <= 0:
            return super().basic_ack(delivery_tag, multiple=multiple)
        try:
            info = self.qos.get(delivery_tag).delivery_info
            receipt = info["sqs_message"]["ReceiptHandle"]
            queue_url = info["sqs_queue"]
        except KeyError:
            return super().basic_ack(delivery_tag, multiple=multiple)
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        key = (queue, queue_url)
        with self._acked_lock:
            pending = self._acked.setdefault(key, [])
            pending.append(receipt)
            full = len(pending) >= SQS_BATCH_LIMIT
            batch = self._acked.pop(key) if full else None
            if not full and self._flush_timer is None:
                self._flush_timer = self.hub.call_later(self.ack_flush_interval, self._on_timer)
        # The job is finished and recorded: free its prefetch slot now.
        VirtualChannel.basic_ack(self, delivery_tag)
        if batch:
            self._delete(key, batch)
        self._wake()

    def _on_timer(self) -> None:
        with self._acked_lock:
            self._flush_timer = None
        self.flush_acks()

    def flush_acks(self) -> None:
        """Delete every acknowledged message now."""
        with self._acked_lock:
            acked, self._acked = self._acked, {}
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
        for key, receipts in acked.items():
            for start in range(0, len(receipts), SQS_BATCH_LIMIT):
                self._delete(key, receipts[start:start + SQS_BATCH_LIMIT])

    def _delete(self, key: tuple[str | None, str], receipts: list[str]) -> None:
        queue, queue_url = key
        entries = [{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts)]
        try:
            resp = self.sqs(queue=queue).delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not delete %d acknowledged message(s) from %s (they will be "
                        "received again after the visibility timeout): %s",
                        len(entries), queue_url, exc)
            return
        for failed in resp.get("Failed", []):
            log.warning("SQS did not delete an acknowledged message from %s (%s: %s); it will "
                        "be received again after the visibility timeout", queue_url,
                        failed.get("Code"), failed.get("Message"))

    def close(self):
        try:
            self.flush_acks()
        finally:
            super().close()


class Channel(BatchedAcks, sqs_channel.Channel):
    pass


class Transport(SQS.Transport):
    Channel = Channel
