"""The worker's SQS I/O: every call it makes to SQS besides kombu's long poll.

* acknowledgements: `ack()` buffers a receipt; DeleteMessageBatch sends them,
  10 at once or within `ack_flush_interval` seconds, and `flush()` sends what
  is left on every exit path (channel close, warm shutdown, the shutdown
  cut-off, interpreter exit). The timer runs for the oldest receipt waiting: a
  full batch sent stops it, so a steady stream sends full batches only;
* visibility: `extend()` takes every held message of one heartbeat and sends
  ChangeMessageVisibilityBatch, one call per 10 messages, not one per message;
* hand-back: `hand_back()` makes messages visible again at once (visibility 0);
* `change_visibility()` for one message (a rejected message hidden briefly).

Calls run on this component's own thread, never on the consumer's event loop,
except `flush()` and `hand_back(wait=True)`, which exit paths call and wait for.
Nothing is lost when a call fails: an unacknowledged message is received again
after its visibility timeout, and the job's record is already terminal
(conditional writes keep it so).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError

from tasks.ops.clients import sqs_client
from tasks.ops.settings import Settings

log = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10
DEFAULT_FLUSH_INTERVAL = 1.0
# Entries SQS refuses because the message is already gone: not worth a warning.
GONE_CODES = (
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "InvalidParameterValue",
    "AWS.SimpleQueueService.MessageNotInflight",
    "ReceiptHandleIsInvalidException",
)


def _chunks(items: list, size: int = SQS_BATCH_LIMIT) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqsIO:
    def __init__(
        self,
        settings: Settings,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        timer: Callable[[float, Callable[[], None]], threading.Timer] = threading.Timer,
    ):
        self.settings = settings
        self.flush_interval = flush_interval
        self._make_timer = timer
        self._acked: dict[str, list[str]] = {}  # queue url -> receipts not yet deleted
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqs-io")
        self.calls: dict[str, int] = {}  # API name -> calls made (benchmarks, tests)

    def _sqs(self, quick: bool = True):
        return sqs_client(self.settings, quick=quick)

    def _count(self, api: str) -> None:
        self.calls[api] = self.calls.get(api, 0) + 1

    def _submit(self, fn, *args) -> Future:
        try:
            return self._executor.submit(fn, *args)
        except RuntimeError:  # shut down (interpreter exit): do it here
            future: Future = Future()
            future.set_result(fn(*args))
            return future

    # --- acknowledgements --------------------------------------------------------
    def ack(self, queue_url: str, receipt: str) -> None:
        """Delete this message soon (batched); at once if flush_interval is 0."""
        if self.flush_interval <= 0:
            self._submit(self._delete, queue_url, [receipt])
            return
        with self._lock:
            pending = self._acked.setdefault(queue_url, [])
            pending.append(receipt)
            batch = self._acked.pop(queue_url) if len(pending) >= SQS_BATCH_LIMIT else None
            if batch is None and self._timer is None:
                self._timer = self._make_timer(self.flush_interval, self._on_timer)
                self._timer.daemon = True
                self._timer.start()
            elif batch is not None and not self._acked and self._timer is not None:
                # Nothing left waiting: the timer was for receipts just sent. Left running,
                # it would send the next few receipts as a part batch (a request per
                # second on a steady stream: the delete batches of 7 the bench saw).
                self._timer.cancel()
                self._timer = None
        if batch:
            self._submit(self._delete, queue_url, batch)

    def pending_acks(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._acked.values())

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        # A timer cancelled as it fired may flush a part batch early: one request more,
        # nothing lost.
        self._submit(self.flush)

    def flush(self) -> None:
        """Delete every acknowledged message now, waiting for the calls."""
        with self._lock:
            acked, self._acked = self._acked, {}
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for queue_url, receipts in acked.items():
            for batch in _chunks(receipts):
                self._delete(queue_url, batch)

    def _delete(self, queue_url: str, receipts: list[str]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)]
        self._count("DeleteMessageBatch")
        try:
            resp = self._sqs(quick=False).delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning(
                "could not delete %d acknowledged message(s) from %s (they will be "
                "received again after the visibility timeout): %s",
                len(entries),
                queue_url,
                exc,
            )
            return
        for failed in resp.get("Failed", []):
            log.warning(
                "SQS did not delete an acknowledged message from %s (%s: %s); it will "
                "be received again after the visibility timeout",
                queue_url,
                failed.get("Code"),
                failed.get("Message"),
            )

    # --- visibility ---------------------------------------------------------------
    def extend(self, entries: list[tuple[str, str, int]]) -> Future:
        """Set the visibility of (queue url, receipt, seconds) entries, batched per queue."""
        return self._submit(self._change_batch, entries, "extend")

    def hand_back(self, entries: list[tuple[str, str]], *, wait: bool = False) -> None:
        """Make these messages visible again at once, for another worker to take."""
        batch = [(url, receipt, 0) for url, receipt in entries]
        if wait:
            self._change_batch(batch, "hand back")
        else:
            self._submit(self._change_batch, batch, "hand back")

    def change_visibility(self, queue_url: str, receipt: str, timeout: int) -> Future:
        return self._submit(self._change_batch, [(queue_url, receipt, timeout)], "hide")

    def _change_batch(self, entries: list[tuple[str, str, int]], why: str) -> int:
        """ChangeMessageVisibilityBatch per queue; returns how many SQS accepted."""
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for queue_url, receipt, timeout in entries:
            by_queue.setdefault(queue_url, []).append((receipt, timeout))
        accepted = 0
        for queue_url, items in by_queue.items():
            for batch in _chunks(items):
                request = [
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": t}
                    for i, (r, t) in enumerate(batch)
                ]
                self._count("ChangeMessageVisibilityBatch")
                try:
                    resp = self._sqs().change_message_visibility_batch(
                        QueueUrl=queue_url, Entries=request
                    )
                except (ClientError, BotoCoreError, OSError) as exc:
                    log.warning(
                        "could not %s %d message(s) on %s: %s", why, len(request), queue_url, exc
                    )
                    continue
                accepted += len(resp.get("Successful", []))
                for failed in resp.get("Failed", []):
                    level = logging.INFO if failed.get("Code") in GONE_CODES else logging.WARNING
                    log.log(
                        level,
                        "could not %s a message on %s (%s: %s)",
                        why,
                        queue_url,
                        failed.get("Code"),
                        failed.get("Message"),
                    )
        return accepted

    def close(self) -> None:
        self.flush()
        self._executor.shutdown(wait=True)


_instance: SqsIO | None = None
_instance_pid: int | None = None
_instance_lock = threading.Lock()


def sqs_io(settings: Settings) -> SqsIO:
    """This process's SQS I/O component (one per process: threads do not cross a fork),
    made with the settings of its first caller (the worker's app's, from a middleware, the
    consumer or the channel's transport options)."""
    global _instance, _instance_pid
    with _instance_lock:
        if _instance is None or _instance_pid != os.getpid():
            _instance = SqsIO(settings, settings.ack_flush_interval)
            _instance_pid = os.getpid()
            atexit.register(_instance.flush)
        return _instance
