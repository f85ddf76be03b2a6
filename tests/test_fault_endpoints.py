"""Throttling, 5xx and a 10 s outage of the AWS endpoints, injected by a proxy."""

from __future__ import annotations

import time

import pytest
from celery import states

from tasks.debug import add, sleep
from tests.conftest import wait_until
from tests.fault_proxy import FaultProxy
from tests.faults import all_terminal, drained, side_queue, statuses, submit


def proxied_env(queue, proxy: FaultProxy) -> dict[str, str]:
    # The queue URL's host is where kombu sends its requests: aim it at the proxy too.
    path = queue.url.split("/", 3)[3]
    return {**queue.env, "AWS_ENDPOINT_URL": proxy.url, "JOBS_QUEUE_URL": f"{proxy.url}/{path}"}


@pytest.mark.integration
@pytest.mark.fault
def test_jobs_complete_through_throttling_and_5xx(stack, start_worker):
    queue = side_queue(stack, "throttled")
    with FaultProxy(stack.endpoint, every=3) as proxy:
        worker = start_worker(concurrency=2, env=proxied_env(queue, proxy))
        proxy.mode = "flaky"
        jobs = [submit(stack, add.s(x=n, y=n), queue) for n in range(10)]
        wait_until(lambda: all_terminal(stack, jobs), 90, message="every job finished")
        proxy.mode = "pass"
        assert set(statuses(stack, jobs).values()) == {states.SUCCESS}
        for service in ("sqs", "dynamodb"):
            for fault in ("throttled", "503"):
                assert proxy.counts[(service, fault)] > 0, proxy.counts
        wait_until(lambda: drained(stack, queue.url), 20, message="queue empty")
        assert stack.queue_counts(queue.dlq_url) == (0, 0)
        assert worker.alive()


@pytest.mark.integration
@pytest.mark.fault
def test_a_10_second_outage_under_a_worker_loses_nothing(stack, start_worker):
    queue = side_queue(stack, "outage")
    with FaultProxy(stack.endpoint) as proxy:
        worker = start_worker(concurrency=2, env=proxied_env(queue, proxy))
        before = [submit(stack, sleep.s(seconds=2, steps=2), queue) for _ in range(4)]
        wait_until(
            lambda: (
                states.STARTED in statuses(stack, before).values()
                or "PROGRESS" in statuses(stack, before).values()
            ),
            30,
            message="jobs running",
        )
        proxy.mode = "down"
        during = [submit(stack, add.s(x=n, y=1), queue) for n in range(4)]
        time.sleep(10)  # the fault itself: the endpoint is down for 10 s
        proxy.mode = "pass"
        jobs = before + during
        wait_until(lambda: all_terminal(stack, jobs), 120, message="every job finished")
        assert set(statuses(stack, jobs).values()) == {states.SUCCESS}
        assert proxy.counts[("sqs", "dropped")] + proxy.counts[("dynamodb", "dropped")] > 0
        assert worker.alive()
        wait_until(lambda: drained(stack, queue.url), 30, message="queue empty")
        assert stack.queue_counts(queue.dlq_url) == (0, 0)


def test_the_backend_retries_lost_connections_and_throttling_but_not_bad_requests():
    from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

    from tasks.celery_app import app
    from tasks.results.backend import DynamoDBJobBackend

    backend = DynamoDBJobBackend(app)

    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": "x"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "UpdateItem",
        )

    assert backend.always_retry
    assert backend.exception_safe_to_retry(EndpointConnectionError(endpoint_url="http://x"))
    assert backend.exception_safe_to_retry(ConnectionClosedError(endpoint_url="http://x"))
    assert backend.exception_safe_to_retry(
        client_error("ProvisionedThroughputExceededException", 400)
    )
    assert backend.exception_safe_to_retry(client_error("InternalServerError", 500))
    assert not backend.exception_safe_to_retry(client_error("ValidationException", 400))
    assert not backend.exception_safe_to_retry(ValueError("not JSON"))
