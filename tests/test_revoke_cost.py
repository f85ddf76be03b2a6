"""What revocation costs: the worker's DynamoDB requests per job, counted at a proxy.

In a module of its own so that no other worker shares the queue while it counts (docs/
celery-compatibility.md quotes these figures).
"""

from __future__ import annotations

from tests.conftest import wait_until
from tests.test_revoke import drained


def test_requests_per_job_with_and_without_revocation(stack, start_worker, monkeypatch):
    """The docs' figures. A worker whose DynamoDB calls pass a counting proxy (the test's
    own calls go straight to the emulator): per job, the STARTED and the final write, and
    no read unless a job is still running when a REVOKE_CHECK_SECONDS check comes round."""
    from tasks.debug import add, sleep
    from tests import fault_proxy

    # Count by operation (X-Amz-Target: DynamoDB_20120810.UpdateItem), not by service.
    monkeypatch.setattr(
        fault_proxy,
        "service_of",
        lambda headers: headers.get("X-Amz-Target", "other").rsplit(".")[-1],
    )
    with fault_proxy.FaultProxy(stack.endpoint) as proxy:
        start_worker(concurrency=2, env={"AWS_ENDPOINT_URL_DYNAMODB": proxy.url})

        def calls() -> dict[str, int]:
            return {op: n for (op, _), n in proxy.counts.items()}

        def spent(before: dict[str, int]) -> dict[str, int]:
            now = calls()
            return {op: now[op] - before.get(op, 0) for op in now if now[op] != before.get(op)}

        jobs = 10
        base = calls()
        results = [add.delay(i, i) for i in range(jobs)]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(jobs)]
        plain = spent(base)
        assert plain["UpdateItem"] == 2 * jobs  # STARTED, SUCCESS
        assert plain.get("BatchGetItem", 0) <= 1 and "GetItem" not in plain

        base = calls()
        revoked = [add.apply_async((i, i), countdown=2) for i in range(jobs)]
        for r in revoked:
            r.revoke()
        wait_until(lambda: drained(stack), 60, message="the revoked jobs acknowledged")
        dropped = spent(base)
        assert dropped == {"UpdateItem": jobs}  # the refused STARTED write: nothing else

        base = calls()
        sleep.delay(seconds=6, steps=3).get(timeout=60)
        long_job = spent(base)
        # STARTED, three progress steps, SUCCESS; and its run lease's renewal if a beat (a
        # third of the 30 s visibility timeout: tasks.worker.lease_heartbeat) fell in its run.
        assert 2 + 3 <= long_job["UpdateItem"] <= 2 + 3 + 1
        assert 1 <= long_job.get("BatchGetItem", 0) <= 2  # one per 5 s while it runs
    print(
        f"\nDynamoDB requests of the worker: {jobs} jobs {plain}; {jobs} revoked before "
        f"they ran {dropped}; one 6 s job with 3 progress steps {long_job}"
    )
