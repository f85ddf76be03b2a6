"""The five measurements. Each returns plain dicts that report.py turns into tables."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from bench import messages, workers
from bench.proxy import CountingProxy
from bench.servers import free_port, stop_process, wait_for_port
from bench.stack import JOBS, Stack, item_size

ROOT = Path(__file__).resolve().parent.parent
# A stopped worker's last long poll lives on in the server until it times out, and may
# still take a message for nobody (hidden for the visibility timeout): let it expire.
LONG_POLL_GRACE = float(Stack.WAIT_TIME_SECONDS) + 0.5


def _stop(worker: workers.Worker) -> None:
    worker.stop()
    time.sleep(LONG_POLL_GRACE)
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}


def _per_job(counts: Counter, jobs: int) -> dict:
    sqs = {a: n / jobs for (s, a), n in counts.items() if s == "sqs"}
    ddb = {a: n / jobs for (s, a), n in counts.items() if s == "dynamodb"}
    return {
        "sqs": sqs, "dynamodb": ddb,
        "sqs_total": sum(sqs.values()),
        "ddb_writes": sum(v for a, v in ddb.items() if a in WRITES),
        "ddb_reads": sum(v for a, v in ddb.items() if a in READS),
    }


def calls_and_cpu(stack: Stack, kinds: list[str], jobs: dict[str, int], processes: int,
                  timeout: float) -> list[dict]:
    """Scenarios 1 and 2: requests per job at a counting proxy, worker CPU per 1,000 jobs.

    Per kind: start the worker through the proxy, run a few warm-up jobs (startup calls
    and imports stay out of the window), then count the requests and CPU seconds of
    the window in which `jobs[name]` jobs are sent and drained.
    """
    rows = []
    with CountingProxy(stack.sqs_endpoint, stack.ddb_endpoint) as proxy:
        for kind in kinds:
            worker = workers.start(kind, stack.env(proxy.url, f"calls-{kind}"), processes,
                                   stack.log_dir, "calls")
            try:
                for name, count in jobs.items():
                    task, kwargs = JOBS[name]
                    messages.fill(stack.sqs, stack.queue_url(), task, kwargs, 2 * processes,
                                  stack.queue_name)
                    stack.wait_drained(worker.alive, timeout)
                    before, cpu0, t0 = proxy.snapshot(), worker.cpu_seconds(), time.monotonic()
                    ids = messages.fill(stack.sqs, stack.queue_url(), task, kwargs, count,
                                        stack.queue_name)
                    t1 = stack.wait_drained(worker.alive, timeout)
                    cpu = worker.cpu_seconds() - cpu0
                    counts = proxy.snapshot() - before
                    item = stack.item(kind, ids[-1]) or {}
                    status = stack.status(kind, ids[-1])
                    rows.append({
                        "kind": kind, "job": name, "jobs": count, "seconds": t1 - t0,
                        "status_of_last": status, "item_bytes": item_size(item),
                        "cpu_ms_per_job": 1000 * cpu / count,
                        "cpu_s_per_1000": 1000 * cpu / count,
                        **_per_job(counts, count),
                    })
            finally:
                worker.stop()
                proxy.wait_idle()
    return rows


def throughput(stack: Stack, kinds: list[str], process_counts: list[int], jobs: int,
               timeout: float, window: float, emulator_pids: list[int] = ()) -> list[dict]:
    """Scenario 4: jobs/s drained from a pre-filled queue, emulators reached directly.

    The rate is taken from the moment 10% of the jobs are done (worker start-up is not
    in it) to the last delete, or to the end of `window` seconds for a slow kind, after
    which the queue is purged. The CPU the worker and the emulators spent per job in that
    window shows where the time goes on a machine they share.
    """
    rows = []
    task, kwargs = JOBS["noop"]
    for processes in process_counts:
        for kind in kinds:
            messages.fill(stack.sqs, stack.queue_url(), task, kwargs, jobs, stack.queue_name)
            worker = workers.start(kind, stack.env(None, f"tp-{kind}-{processes}"), processes,
                                   stack.log_dir, f"tp{processes}")
            try:
                deadline = time.monotonic() + timeout
                start_depth = start_at = window_end = None
                while True:
                    depth = stack.depth()
                    now = time.monotonic()
                    if start_at is None and depth <= 0.9 * jobs:
                        start_depth, start_at, window_end = depth, now, now + window
                        cpu0 = worker.cpu_seconds()
                        emu0 = workers.tree_cpu_seconds(list(emulator_pids))
                    if depth == 0 or (window_end is not None and now >= window_end):
                        break
                    if now > deadline:
                        raise TimeoutError(f"{kind} x{processes}: {depth} jobs left")
                    if not worker.alive():
                        raise RuntimeError(f"{kind} worker exited; see {stack.log_dir}")
                    time.sleep(0.02)
                elapsed = max(now - start_at, 1e-6)
                done = max(start_depth - depth, 1)
                rows.append({
                    "kind": kind, "processes": processes, "jobs": start_depth - depth,
                    "jobs_per_s": (start_depth - depth) / elapsed,
                    "worker_cpu_ms_per_job": 1000 * (worker.cpu_seconds() - cpu0) / done,
                    "emulator_cpu_ms_per_job": 1000 * (workers.tree_cpu_seconds(
                        list(emulator_pids)) - emu0) / done,
                })
            finally:
                _stop(worker)
            if stack.depth():
                stack.sqs.purge_queue(QueueUrl=stack.queue_url())
                stack.wait_drained(lambda: True, 60)
    return rows


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"n": len(ordered), "p50_ms": 1000 * pick(0.5), "p95_ms": 1000 * pick(0.95),
            "p99_ms": 1000 * pick(0.99), "mean_ms": 1000 * statistics.fmean(ordered)}


def _wait_success(stack: Stack, kind: str, job_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while stack.status(kind, job_id) != "SUCCESS":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{kind}: job {job_id} not SUCCESS within {timeout}s")


def latency(stack: Stack, kinds: list[str], jobs: int, timeout: float,
            http: bool = True) -> list[dict]:
    """Scenario 5: submit-to-SUCCESS-visible on an idle stack, one job at a time.

    `delay()` for the Celery kinds, a boto3 send_message for the floor; then GetItem
    polled back to back. The stack is moto's server for both services: fauxqs does not
    speak SQS's query protocol, which API Gateway's integration (and so the shim) uses.
    This process's Celery apps were configured at import from the first stack, so
    their producers are pointed at this one by hand.
    """
    os.environ.update(stack.env(None, "latency-client"))
    rows = []
    for kind in kinds:
        worker = workers.start(kind, stack.env(None, f"lat-{kind}"), 2, stack.log_dir, "lat")
        submit = _submitter(stack, kind)
        try:
            _wait_success(stack, kind, submit(), 60)  # warm-up: worker ready
            samples = []
            for _ in range(jobs):
                t0 = time.perf_counter()
                _wait_success(stack, kind, submit(), timeout)
                samples.append(time.perf_counter() - t0)
            rows.append({"kind": kind, "via": "sqs send (boto3)" if kind == "floor"
                         else "delay()", **_percentiles(samples)})
            if kind == "ours" and http:
                rows.extend(_http_latency(stack, jobs, timeout))
        finally:
            _stop(worker)
    return rows


def _submitter(stack: Stack, kind: str):
    task, kwargs = JOBS["noop"]
    if kind == "floor":
        def send() -> str:
            job_id = str(uuid.uuid4())
            stack.sqs.send_message(QueueUrl=stack.queue_url(),
                                   MessageBody=messages.encode(task, kwargs, stack.queue_name,
                                                               job_id))
            return job_id
        return send
    if kind == "stock":
        from bench.stock_app import add
    else:
        from tasks.debug import add
    conf = add.app.conf
    conf.broker_transport_options = {
        **conf.broker_transport_options,
        "predefined_queues": {stack.queue_name: {"url": stack.queue_url()}}}
    conf.task_default_queue = stack.queue_name
    return lambda: add.delay(**kwargs).id


def _http_latency(stack: Stack, jobs: int, timeout: float) -> list[dict]:
    """Through the API shim (gunicorn), if it exists: submit-to-SUCCESS and submit alone."""
    if not (ROOT / "api_shim" / "app.py").exists():
        return [{"kind": "ours", "via": "HTTP (api_shim)", "note": "api_shim not present"}]
    port = free_port()
    env = {**os.environ, **stack.env(None, "shim"), "JOBS_API_KEYS": "bench-key",
           "PYTHONPATH": str(ROOT)}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(stack.log_dir / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(gunicorn), "-b", f"127.0.0.1:{port}", "-w", "1",
                             "--control-socket", str(stack.log_dir / "gunicorn.ctl"),
                             "api_shim.app:create_app()"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    task, kwargs = JOBS["noop"]
    url = f"http://127.0.0.1:{port}/tasks/{task}"
    body = json.dumps(kwargs).encode()

    def post() -> str:
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "x-api-key": "bench-key"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["job_id"]

    try:
        wait_for_port(port, proc)
        _wait_success(stack, "ours", post(), 60)
        end_to_end, submit_http, submit_sqs = [], [], []
        for _ in range(jobs):
            t0 = time.perf_counter()
            job_id = post()
            submit_http.append(time.perf_counter() - t0)
            _wait_success(stack, "ours", job_id, timeout)
            end_to_end.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stack.sqs.send_message(QueueUrl=stack.queue_url(), MessageBody=messages.encode(
                task, kwargs, stack.queue_name))
            submit_sqs.append(time.perf_counter() - t0)
            _drain_quietly(stack, timeout)
        return [
            {"kind": "ours", "via": "HTTP (api_shim)", **_percentiles(end_to_end)},
            {"kind": "submit only", "via": "HTTP POST to api_shim", **_percentiles(submit_http)},
            {"kind": "submit only", "via": "boto3 send_message", **_percentiles(submit_sqs)},
        ]
    except (OSError, TimeoutError, KeyError, ValueError) as exc:
        return [{"kind": "ours", "via": "HTTP (api_shim)", "note": f"failed: {exc!r}"}]
    finally:
        stop_process(proc)


def _drain_quietly(stack: Stack, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        stack.wait_drained(lambda: True, timeout, interval=0.01)
