"""tasks.sqs_transport: acknowledgements become DeleteMessageBatch calls, and none is lost."""

from __future__ import annotations

import boto3
import pytest
from kombu import Connection

from tasks.sqs_transport import Transport


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


def counts(sqs, url) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return (int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]))


def open_channel(url, hub):
    conn = Connection("sqs://", transport=Transport, transport_options={
        "region": "us-east-1", "predefined_queues": {"acks": {"url": url}},
        "wait_time_seconds": 0, "ack_flush_interval": 1.0})
    channel = conn.channel()
    channel.hub = hub
    return conn, channel


def receive(channel, n):
    with Connection("sqs://", transport=Transport, transport_options=channel.transport_options
                    ) as producer_conn:
        producer = producer_conn.Producer()
        for i in range(n):
            producer.publish({"n": i}, routing_key="acks", serializer="json")
    return [channel.basic_get("acks", no_ack=False) for _ in range(n)]


def test_acks_wait_for_the_timer_then_go_in_one_batch(queue):
    sqs, url = queue
    hub = FakeHub()
    conn, channel = open_channel(url, hub)
    channel.basic_qos(prefetch_count=3)
    received = receive(channel, 3)
    assert counts(sqs, url) == (0, 3)
    assert channel.qos.can_consume_max_estimate() == 0

    for message in received:
        channel.basic_ack(message.delivery_tag)
    # The prefetch slots are free at once; the messages are deleted on the timer.
    assert channel.qos.can_consume_max_estimate() == 3
    assert counts(sqs, url) == (0, 3)
    assert [e.delay for e in hub.later] == [1.0]

    hub.later[0].callback()
    assert counts(sqs, url) == (0, 0)
    conn.release()


def test_ten_acks_delete_at_once_and_close_flushes_the_rest(queue):
    sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    received = receive(channel, 12)
    for message in received[:10]:
        channel.basic_ack(message.delivery_tag)
    assert counts(sqs, url) == (0, 2)
    for message in received[10:]:
        channel.basic_ack(message.delivery_tag)
    assert counts(sqs, url) == (0, 2)
    channel.close()  # a warm shutdown or reconnect closes the channel
    assert counts(sqs, url) == (0, 0)
    conn.release()


def test_a_refused_entry_is_logged_and_the_rest_deleted(queue, caplog):
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


def test_without_an_event_loop_acks_delete_at_once(queue):
    sqs, url = queue
    conn, channel = open_channel(url, None)
    (message,) = receive(channel, 1)
    channel.basic_ack(message.delivery_tag)
    assert counts(sqs, url) == (0, 0)
    conn.release()


def test_a_busy_worker_receives_only_when_a_full_batch_fits(queue):
    _sqs, url = queue
    conn, channel = open_channel(url, FakeHub())
    channel.basic_qos(prefetch_count=12)
    assert channel._batch_ready()  # idle: poll for whatever comes
    received = receive(channel, 3)
    assert not channel._batch_ready()  # busy, 9 free: wait for 10
    channel.basic_ack(received[0].delivery_tag)
    assert channel._batch_ready()
    channel.close()
    conn.release()
