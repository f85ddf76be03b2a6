"""tasks.worker.transport and tasks.worker.sqs_io against moto in process.

Acknowledgements become DeleteMessageBatch calls and none is lost; visibility
extensions are one ChangeMessageVisibilityBatch per 10 messages; receiving
switches to batches of 10 by itself for a backlog of short jobs, and back.
"""

from __future__ import annotations

import threading

import boto3
import pytest
from kombu import Connection

from tasks.ops.settings import Settings
from tasks.worker import transport
from tasks.worker.sqs_io import SqsIO
from tasks.worker.transport import RECEIVE_BATCH, Transport


class FakeHub:
    """Records call_later() instead of running an event loop."""

    def __init__(self) -> None:
        self.later: list = []

    def call_later(self, delay, callback, *args):
        entry = _Entry(delay, callback)
        self.later.append(entry)
        return entry

    def call_soon(self, callback, *args):
        return None


class _Entry:
    def __init__(self, delay, callback) -> None:
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def queue(in_process_aws):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="acks", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    return sqs, url


@pytest.fixture
def io(in_process_aws, monkeypatch):
    """A fresh SQS I/O component for the test, used by the channel."""
    component = SqsIO(Settings.from_env(), flush_interval=1.0)
    monkeypatch.setattr(transport, "sqs_io", lambda settings: component)
    monkeypatch.setattr("tasks.worker.channel.sqs_io", lambda settings: component)
    yield component
    component.close()


def counts(sqs, url) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


def open_channel(url, hub):
    conn = Connection(
        "sqs://",
        transport=Transport,
        transport_options={
            "region": "us-east-1",
            "predefined_queues": {"acks": {"url": url}},
            "wait_time_seconds": 0,
            "ack_flush_interval": 1.0,
        },
    )
    channel = conn.channel()
    channel.hub = hub
    return conn, channel


def receive(channel, n):
    with Connection(
        "sqs://", transport=Transport, transport_options=channel.transport_options
    ) as producer_conn:
        producer = producer_conn.Producer()
        for i in range(n):
            producer.publish({"n": i}, routing_key="acks", serializer="json")
    return [channel.basic_get("acks", no_ack=False) for _ in range(n)]


def test_acks_free_their_slots_at_once_and_are_deleted_in_one_batch(queue, io):
    sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    channel.basic_qos(prefetch_count=3)
    received = receive(channel, 3)
    assert counts(sqs, url) == (0, 3)
    assert channel.qos.can_consume_max_estimate() == 0

    for message in received:
        channel.basic_ack(message.delivery_tag)
    # The prefetch slots are free at once; the messages wait for the flush.
    assert channel.qos.can_consume_max_estimate() == 3
    assert io.pending_acks() == 3 and counts(sqs, url) == (0, 3)
    io.flush()
    assert counts(sqs, url) == (0, 0)
    assert io.calls == {"DeleteMessageBatch": 1}
    conn.release()


def test_the_flush_timer_deletes_without_anyone_asking(queue, io):
    sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    (message,) = receive(channel, 1)
    done = threading.Event()
    original = io._delete
    io._delete = lambda *a: (original(*a), done.set())
    channel.basic_ack(message.delivery_tag)
    # Due after 1 s; the generous deadline is for a loaded machine (the first client is built
    # in the flush thread). Without the timer nothing ever deletes it.
    assert done.wait(30), "the acknowledgement was not flushed by the timer"
    assert counts(sqs, url) == (0, 0)
    conn.release()


def test_ten_acks_delete_at_once_and_close_flushes_the_rest(queue, io):
    sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    received = receive(channel, 12)
    for message in received[:10]:
        channel.basic_ack(message.delivery_tag)
    io._executor.submit(lambda: None).result()  # the batch of 10 went on io's thread
    assert counts(sqs, url) == (0, 2)
    for message in received[10:]:
        channel.basic_ack(message.delivery_tag)
    assert counts(sqs, url) == (0, 2)
    channel.close()  # a warm shutdown or reconnect closes the channel
    assert counts(sqs, url) == (0, 0)
    conn.release()


def test_a_refused_entry_is_logged_and_the_rest_deleted(queue, io, caplog):
    sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    good, stale = receive(channel, 2)
    stale.delivery_info["sqs_message"]["ReceiptHandle"] = "not-a-receipt-handle"
    channel.basic_ack(good.delivery_tag)
    channel.basic_ack(stale.delivery_tag)
    channel.flush_acks()
    # The good one is gone; the other stays in flight and comes back after its
    # visibility timeout, so the job is delayed, never lost.
    assert counts(sqs, url) == (0, 1)
    assert "did not delete an acknowledged message" in caplog.text
    conn.release()


def test_without_an_event_loop_acks_delete_at_once(queue, io):
    sqs, url = queue
    conn, channel = open_channel(url, None)
    (message,) = receive(channel, 1)
    channel.basic_ack(message.delivery_tag)
    assert counts(sqs, url) == (0, 0)
    conn.release()


def test_queue_delete_is_kombus_own_again(queue, io):
    # Our old ack buffer had a method named _delete, shadowing kombu's Channel._delete
    # (delete a queue): every queue_delete() raised TypeError.
    _sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    assert "_delete" not in vars(transport.AdaptiveBatches)
    channel.queue_delete("acks")  # kombu deletes the queue: no TypeError
    conn.release()


def test_visibility_extensions_go_ten_to_a_call(queue, io):
    sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    received = receive(channel, 12)
    entries = [(url, m.delivery_info["sqs_message"]["ReceiptHandle"], 0) for m in received]
    assert io.extend(entries).result() == 12
    assert io.calls == {"ChangeMessageVisibilityBatch": 2}
    assert counts(sqs, url) == (12, 0)  # visibility 0: all visible again
    conn.release()


def test_receiving_goes_to_batches_for_a_backlog_of_short_jobs_and_back(queue, io):
    _sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    channel.basic_qos(prefetch_count=2)  # concurrency 2, Celery's default multiplier
    assert not channel.batched and channel.qos.prefetch_count == 2
    # Short jobs (two processes finishing one every 0.1 s) and a full receive: batch.
    channel._job_seconds = 0.2
    channel.note_received(requested=2, got=2)
    assert channel.batched and channel.qos.prefetch_count == 2 + 2 * RECEIVE_BATCH
    # Busy with both processes and a batch reserved: wait for a whole batch of slots.
    received = receive(channel, 13)
    assert not channel._batch_ready()
    # A process would wait (fewer held than processes): receive at once.
    for message in received[:12]:
        channel.basic_ack(message.delivery_tag)
    channel._job_seconds = 0.2
    assert channel._batch_ready()
    # The queue ran dry: back to Celery's prefetch, one receive per free process.
    channel.note_received(requested=10, got=3)
    assert not channel.batched and channel.qos.prefetch_count == 2
    # Long jobs never batch, backlog or not.
    channel._job_seconds = 30.0
    channel.note_received(requested=2, got=2)
    assert not channel.batched
    channel.close()
    conn.release()


class ManualTimer:
    """threading.Timer's interface, fired by the test instead of the clock."""

    made: list[ManualTimer] = []

    def __init__(self, interval, function):
        self.interval, self.function = interval, function
        self.started = self.cancelled = False
        self.daemon = False
        ManualTimer.made.append(self)

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.function()


def test_a_steady_stream_of_acks_deletes_in_full_batches_only(queue, monkeypatch):
    """SQS's DeleteMessageBatch takes up to 10 entries; a part batch is sent only when its
    oldest receipt has waited the flush interval, not whenever an earlier batch's timer
    runs out (which sent batches of 7 on average under a steady stream)."""
    sqs, url = queue
    ManualTimer.made = []
    io = SqsIO(Settings.from_env(), flush_interval=1.0, timer=ManualTimer)
    sent: list[int] = []
    original = io._delete
    io._delete = lambda queue_url, receipts: (
        sent.append(len(receipts)),
        original(queue_url, receipts),
    )
    for i in range(13):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    receipts = []
    while len(receipts) < 13:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        receipts += [m["ReceiptHandle"] for m in got]
    for receipt in receipts[:10]:
        io.ack(url, receipt)
    io._executor.submit(lambda: None).result()
    first = ManualTimer.made[0]
    assert sent == [10] and first.cancelled, "the first batch's timer still runs"
    for receipt in receipts[10:]:
        io.ack(url, receipt)
    first.fire()  # the old timer's time runs out: it must not send the 3 new receipts
    io._executor.submit(lambda: None).result()
    assert sent == [10] and io.pending_acks() == 3
    second = ManualTimer.made[-1]
    assert second is not first and second.started and not second.cancelled
    second.fire()  # the 3 receipts' own interval: sent as a part batch
    io._executor.submit(lambda: None).result()
    assert sent == [10, 3] and counts(sqs, url) == (0, 0)
    io.close()
