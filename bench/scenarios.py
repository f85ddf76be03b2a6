"""The measurements. Each returns plain dicts that report.py turns into tables.

Every scenario runs against the same emulators (fauxqs for SQS, dynalite for
DynamoDB). CPU is sampled from /proc before and after each measured window: the
worker's, split by part (bench.workers.CPU_PARTS), and each emulator's, so the report
can tell where a job's CPU goes. fauxqs's figure has the bench's own depth polls
(GetQueueAttributes, up to 50 a second) taken out, at their cost measured once by
`poll_cost`; it still includes filling the queue, which any submitter would cause.
"""

from __future__ import annotations

import contextlib
import json
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from bench import messages, waits, workers
from bench.proxy import CountingProxy
from bench.servers import (
    ServerSet,
    free_port,
    process_cpu_seconds,
    stop_process,
    wait_for_port,
)
from bench.stack import JOBS, Stack, item_size
from tasks.worker.revocation import REVOKE_CHECK_SECONDS

ROOT = Path(__file__).resolve().parent.parent
# A stopped worker's last long poll lives on in the server until it times out, and may
# still take a message for nobody (hidden for the visibility timeout): let it expire.
LONG_POLL_GRACE = float(Stack.WAIT_TIME_SECONDS) + 0.5
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}


def _stop(worker: workers.Worker) -> None:
    worker.stop()
    time.sleep(LONG_POLL_GRACE)


def _per_job(counts: Counter, jobs: int) -> dict:
    sqs = {a: n / jobs for (s, a), n in counts.items() if s == "sqs"}
    ddb = {a: n / jobs for (s, a), n in counts.items() if s == "dynamodb"}
    return {
        "sqs": sqs,
        "dynamodb": ddb,
        "sqs_total": sum(sqs.values()),
        "ddb_writes": sum(v for a, v in ddb.items() if a in WRITES),
        "ddb_reads": sum(v for a, v in ddb.items() if a in READS),
    }


def poll_cost(stack: Stack, servers: ServerSet, polls: int = 400) -> float:
    """fauxqs CPU seconds per `stack.depth()` call (O(1) in fauxqs whatever the depth)."""
    before = servers.cpu_seconds()["fauxqs"]
    for _ in range(polls):
        stack.depth()
    return (servers.cpu_seconds()["fauxqs"] - before) / polls


class CpuWindow:
    """CPU of a worker and of the emulators between `start()` and `stop(jobs)`."""

    def __init__(self, worker: workers.Worker, servers: ServerSet, stack: Stack) -> None:
        self.worker, self.servers, self.stack = worker, servers, stack

    def start(self) -> CpuWindow:
        self.worker0, self.emulators0 = self.worker.cpu(), self.servers.cpu_seconds()
        self.waited0 = self.worker.run_queue()
        self.polls0 = self.stack.depth_calls
        self.driver0, self.t0 = process_cpu_seconds(os.getpid()), time.monotonic()
        return self

    def stop(self, jobs: int) -> dict:
        """ms per job: `cpu` (worker, by part, with "total"), `emulators` (by name),
        `driver_ms` (this process: submitting, polling, the counting proxy) and
        `run_queue_ms` (the worker waiting for a CPU: main, children); `window_s`."""
        worker = workers.diff(self.worker.cpu(), self.worker0)
        waited = workers.diff(self.worker.run_queue(), self.waited0)
        emulators = workers.diff(self.servers.cpu_seconds(), self.emulators0)
        polls = self.stack.depth_calls - self.polls0
        emulators["fauxqs"] = max(0.0, emulators["fauxqs"] - polls * self.stack.poll_cost)
        driver = process_cpu_seconds(os.getpid()) - self.driver0
        jobs = max(jobs, 1)
        return {
            "cpu": {k: 1000 * v / jobs for k, v in worker.items()},
            "emulators": {k: 1000 * v / jobs for k, v in emulators.items()},
            "driver_ms": 1000 * max(0.0, driver) / jobs,
            # ms per job the worker's threads spent runnable, waiting for a CPU
            "run_queue_ms": {k: 1000 * v / jobs for k, v in waited.items()},
            "window_s": time.monotonic() - self.t0,
            "bench_polls": polls,
        }


# A job that outlasts ours's revocation check (tasks.worker.revocation: every 5 s while a
# job runs), so that the worker's first check, and the DynamoDB client the main process
# makes for it once in its life, fall in the warm-up and not in a measured window
# (2026-12-06: about 0.2 ms of "other threads" CPU per job of a 300-job window).
WARM_UP_JOB = ("tasks.debug.sleep", {"seconds": REVOKE_CHECK_SECONDS + 1, "steps": 1})


def warm_up(stack: Stack, worker: workers.Worker, timeout: float) -> None:
    """Run WARM_UP_JOB to its end: a worker's one-off start-up work stays out of the window."""
    task, kwargs = WARM_UP_JOB
    messages.fill(stack.sqs, stack.queue_url(), task, kwargs, 1, stack.queue_name)
    stack.wait_drained(worker.alive, timeout)


def calls_and_cpu(
    stack: Stack,
    servers: ServerSet,
    kinds: list[str],
    jobs: dict[str, int],
    processes: int,
    timeout: float,
    warm: bool = True,
) -> list[dict]:
    """Scenarios 1 and 2: requests per job at a counting proxy, CPU per job.

    Per kind: start the worker through the proxy, run warm-up jobs (startup calls,
    imports and one-off clients stay out of the window: `warm_up`), then count the
    requests and CPU seconds of the window in which `jobs[name]` jobs are sent at once
    (a backlog) and drained.
    """
    rows = []
    with CountingProxy(stack.sqs_endpoint, stack.ddb_endpoint) as proxy:
        for kind in kinds:
            worker = workers.start(
                kind,
                stack.env(proxy.url, f"calls-{kind}"),
                processes,
                stack.log_dir,
                "calls",
                preexec=stack.worker_preexec,
            )
            try:
                if warm:  # not with --quick: its figures mean nothing anyway
                    warm_up(stack, worker, timeout)
                for name, count in jobs.items():
                    task, kwargs = JOBS[name]
                    messages.fill(
                        stack.sqs, stack.queue_url(), task, kwargs, 2 * processes, stack.queue_name
                    )
                    stack.wait_drained(worker.alive, timeout)
                    before, t0 = proxy.snapshot(), time.monotonic()
                    window = CpuWindow(worker, servers, stack).start()
                    ids = messages.fill(
                        stack.sqs, stack.queue_url(), task, kwargs, count, stack.queue_name
                    )
                    t1 = stack.wait_drained(worker.alive, timeout, interval=0.1)
                    cpu = window.stop(count)
                    counts = proxy.snapshot() - before
                    item = stack.item(kind, ids[-1]) or {}
                    status = stack.status(kind, ids[-1])
                    rows.append(
                        {
                            "kind": kind,
                            "job": name,
                            "jobs": count,
                            "seconds": t1 - t0,
                            "status_of_last": status,
                            "item_bytes": item_size(item),
                            "cpu_ms_per_job": cpu["cpu"]["total"],
                            "cpu_s_per_1000": cpu["cpu"]["total"],
                            **cpu,
                            **_per_job(counts, count),
                        }
                    )
            finally:
                worker.stop()
                proxy.wait_idle()
    return rows


def throughput(
    stack: Stack,
    servers: ServerSet,
    kinds: list[str],
    process_counts: list[int],
    jobs: int,
    timeout: float,
    window: float,
    runs: int = 1,
) -> list[dict]:
    """Scenario 4: jobs/s drained from a pre-filled queue, emulators reached directly.

    `runs` runs per process count, the kinds alternating within each (stock, ours,
    floor, stock, ours, floor, ...); each row is tagged with its `run`.

    The rate is taken from the moment 10% of the jobs are done (worker start-up is not
    in it) to the last delete, or to the end of `window` seconds for a slow kind, after
    which the queue is purged. The CPU the worker and the emulators spent per job in that
    window (the bench.placement CPUs of each side) shows where the time goes.
    """
    rows = []
    task, kwargs = JOBS["noop"]
    rounds = [(p, run, kind) for p in process_counts for run in range(runs) for kind in kinds]
    for processes, run, kind in rounds:
        messages.fill(stack.sqs, stack.queue_url(), task, kwargs, jobs, stack.queue_name)
        worker = workers.start(
            kind,
            stack.env(None, f"tp-{kind}-{processes}"),
            processes,
            stack.log_dir,
            f"tp{processes}-{run}",
            preexec=stack.worker_preexec,
        )
        try:
            done, elapsed, cpu = drain(
                stack, servers, worker, jobs, timeout, window, f"{kind} x{processes}"
            )
            rows.append(
                {
                    "kind": kind,
                    "processes": processes,
                    "run": run,
                    "jobs": done,
                    "jobs_per_s": done / elapsed,
                    **cpu,
                }
            )
        finally:
            _stop(worker)
        if stack.depth():
            stack.sqs.purge_queue(QueueUrl=stack.queue_url())
            stack.wait_drained(lambda: True, 60)
    return rows


def profile(
    stack: Stack, jobs: int, processes: int, timeout: float, top: int = 10, warm: bool = True
) -> dict:
    """Where ours's CPU goes, by function (cProfile, bench.profiled).

    A separate run (the profiler slows what it watches): warm-up jobs, SIGUSR2 to the
    main process and its pool children to start their profiles over, `jobs` no-op jobs
    as a backlog, then a warm shutdown writes the stats. Returns, for the main thread,
    for the pool children together and for the main process's other threads together,
    CPU ms per job by package and the `top` functions by own time.
    """
    out = stack.log_dir / "ours.pstats"
    task, kwargs = JOBS["noop"]
    worker = workers.start(
        "ours",
        stack.env(None, "profile"),
        processes,
        stack.log_dir,
        "profile",
        profile_to=out,
        preexec=stack.worker_preexec,
    )
    try:
        if warm:
            warm_up(stack, worker, timeout)
        messages.fill(stack.sqs, stack.queue_url(), task, kwargs, 2 * processes, stack.queue_name)
        stack.wait_drained(worker.alive, timeout)
        main = worker.procs[0].pid
        for pid in [main, *workers.descendants(main)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)
        messages.fill(stack.sqs, stack.queue_url(), task, kwargs, jobs, stack.queue_name)
        stack.wait_drained(worker.alive, timeout, interval=0.1)
    finally:
        _stop(worker)
    if not out.exists():
        raise RuntimeError(f"the profiled worker wrote no {out.name}; see {stack.log_dir}")
    result = {"jobs": jobs, "main_thread": summarize_profile(pstats.Stats(str(out)), jobs, top)}
    children = sorted(stack.log_dir.glob(f"{out.name}.child-*"))
    if children:
        result["children"] = summarize_profile(pstats.Stats(*map(str, children)), jobs, top)
    threads = sorted(stack.log_dir.glob(f"{out.name}.thread-*"))
    if threads:  # the main process's other threads (bench.profiled)
        result["threads"] = summarize_profile(pstats.Stats(*map(str, threads)), jobs, top)
    return result


def _package(filename: str) -> str:
    if filename == "~":
        return "C built-ins (json, sockets, ssl, ...)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    path = Path(filename)
    if path.is_relative_to(ROOT):
        return path.relative_to(ROOT).parts[0] + " (this project)"
    return "Python stdlib"


def summarize_profile(stats: pstats.Stats, jobs: int, top: int) -> dict:
    by_package: Counter[str] = Counter()
    functions = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += own
        where = name if filename == "~" else f"{_short(filename)}:{line} {name}"
        functions.append((own, cumulative, calls, where))
    total = sum(by_package.values())
    functions.sort(reverse=True)
    return {
        "ms_per_job": 1000 * total / jobs,
        "by_package": [
            {"package": p, "ms_per_job": 1000 * t / jobs, "share": t / total}
            for p, t in by_package.most_common()
            if total
        ],
        "top": [
            {
                "function": where,
                "calls_per_job": calls / jobs,
                "own_ms_per_job": 1000 * own / jobs,
                "cum_ms_per_job": 1000 * cum / jobs,
            }
            for own, cum, calls, where in functions[:top]
        ],
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    parts = Path(filename).parts
    return "/".join(parts[-2:])


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": 1000 * pick(0.5),
        "p95_ms": 1000 * pick(0.95),
        "p99_ms": 1000 * pick(0.99),
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def _p50_ms(samples: list[float]) -> float | None:
    return 1000 * statistics.median(samples) if samples else None


# GetItem back to back would take a core of the two the worker needs: poll every 2 ms on
# average. The pause is drawn at random (0 to 4 ms): with a fixed one the polls fall on a
# grid set by the submit, and a kind whose SUCCESS tends to land just after a poll of that
# grid would wait most of a cycle (a GetItem and a pause, ~3 ms) at every job.
POLL_INTERVAL = 0.002


def _wait_success(stack: Stack, kind: str, job_id: str, timeout: float) -> float | None:
    """Wait for SUCCESS; returns when STARTED was first seen (perf_counter), if it was."""
    deadline = time.monotonic() + timeout
    started = None
    while (status := stack.status(kind, job_id)) != "SUCCESS":
        if status == "STARTED" and started is None:
            started = time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{kind}: job {job_id} not SUCCESS within {timeout}s")
        time.sleep(random.uniform(0, 2 * POLL_INTERVAL))
    return started


def latency(
    stack: Stack, kinds: list[str], jobs: int, timeout: float, http: bool = True, runs: int = 1
) -> list[dict]:
    """Scenario 5: submit-to-SUCCESS-visible on an idle stack, one job at a time.

    `delay()` for the Celery kinds, a boto3 send_message for the floor; then GetItem
    polled every 2 ms on average (random pauses: POLL_INTERVAL). Where a poll saw
    STARTED, the time splits into submit to STARTED (receive and dispatch) and STARTED
    to SUCCESS (run and record); for ours, `split` is each part of a job's path
    (bench.waits.latency_split, from its worker's JOBS_WAIT_TRACE). `runs` series per
    kind, the kinds alternating; each row is tagged with its `run`.
    """
    rows = []
    for run, kind in [(run, kind) for run in range(runs) for kind in kinds]:
        rows.extend(_latency_series(stack, kind, run, jobs, timeout, http=http))
        if kind == "ours":  # what the run lease costs in latency (measurement only)
            rows.extend(_latency_series(stack, kind, run, jobs, timeout, lease=False))
    return rows


def _latency_series(
    stack: Stack,
    kind: str,
    run: int,
    jobs: int,
    timeout: float,
    lease: bool = True,
    http: bool = False,
) -> list[dict]:
    """One series of `jobs` submitted one at a time to a fresh worker of `kind`; for ours
    with `http`, then the HTTP series through the shim to the same worker."""
    env = stack.env(None, f"lat-{kind}")
    tag = f"lat-{run}" if lease else f"lat-nolease-{run}"
    trace = stack.log_dir / f"waits-{tag}.jsonl"
    if kind == "ours":  # its own timestamps: written off a job's path (job_waits)
        env["JOBS_WAIT_TRACE"] = str(trace)
    if not lease:
        env[workers.NO_LEASE_ENV] = "1"
    worker = workers.start(kind, env, 2, stack.log_dir, tag, preexec=stack.worker_preexec)
    submit = _submitter(stack, kind)
    try:
        _wait_success(stack, kind, submit(), 60)  # warm-up: worker ready
        samples, to_started, to_success, marks = [], [], [], []
        for _ in range(jobs):
            t0, wall0 = time.perf_counter(), time.time()
            job_id = submit()
            submitted = time.time()
            started = _wait_success(stack, kind, job_id, timeout)
            t1 = time.perf_counter()
            samples.append(t1 - t0)
            marks.append((job_id, wall0, submitted, wall0 + (t1 - t0)))
            if started is not None:
                to_started.append(started - t0)
                to_success.append(t1 - started)
        through_http = []
        if kind == "ours" and lease and http:
            through_http = [{**r, "run": run} for r in _http_latency(stack, jobs, timeout)]
    finally:
        _stop(worker)
    via = "sqs send (boto3)" if kind == "floor" else "delay()" if lease else workers.WITHOUT_LEASE
    series = {
        "kind": kind,
        "run": run,
        "via": via,
        **_percentiles(samples),
        "p50_to_started_ms": _p50_ms(to_started),
        "p50_started_to_success_ms": _p50_ms(to_success),
        "started_seen": len(to_started),
        **({"split": waits.latency_split(marks, waits.read(trace))} if kind == "ours" else {}),
    }
    return [series, *through_http]


def _submitter(stack: Stack, kind: str):
    task, kwargs = JOBS["noop"]
    if kind == "floor":

        def send() -> str:
            job_id = str(uuid.uuid4())
            stack.sqs.send_message(
                QueueUrl=stack.queue_url(),
                MessageBody=messages.encode(task, kwargs, stack.queue_name, job_id),
            )
            return job_id

        return send
    # Both apps read their settings from this process's environment (Stack.provision).
    if kind == "stock":
        from bench.stock_app import add
    else:
        from tasks.debug import add
    return lambda: add.delay(**kwargs).id


def _http_latency(stack: Stack, jobs: int, timeout: float) -> list[dict]:
    """Through the API shim (gunicorn), if it exists: submit-to-SUCCESS and submit alone."""
    if not (ROOT / "api_shim" / "app.py").exists():
        return [{"kind": "ours", "via": "HTTP (api_shim)", "note": "api_shim not present"}]
    port = free_port()
    env = {
        **os.environ,
        **stack.env(None, "shim"),
        "JOBS_API_KEYS": "bench-key",
        "PYTHONPATH": str(ROOT),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(stack.log_dir / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "--control-socket",
            str(stack.log_dir / "gunicorn.ctl"),
            "api_shim.app:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    task, kwargs = JOBS["noop"]
    url = f"http://127.0.0.1:{port}/tasks/{task}"
    body = json.dumps(kwargs).encode()

    def post() -> str:
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "x-api-key": "bench-key"},
        )
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
            stack.sqs.send_message(
                QueueUrl=stack.queue_url(),
                MessageBody=messages.encode(task, kwargs, stack.queue_name),
            )
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


def drain(
    stack: Stack,
    servers: ServerSet,
    worker: workers.Worker,
    jobs: int,
    timeout: float,
    window: float,
    label: str = "ours",
) -> tuple[int, float, dict]:
    """As scenario 4: from 10% of the jobs done to the last delete or `window` seconds."""
    deadline = time.monotonic() + timeout
    start_depth = start_at = window_end = cpu = None
    while True:
        depth = stack.depth()
        now = time.monotonic()
        if start_at is None and depth <= 0.9 * jobs:
            start_depth, start_at, window_end = depth, now, now + window
            cpu = CpuWindow(worker, servers, stack).start()
        if depth == 0 or (window_end is not None and now >= window_end):
            break
        if now > deadline:
            raise TimeoutError(f"{label}: {depth} jobs left")
        if not worker.alive():
            raise RuntimeError(f"{label} worker exited; see {stack.log_dir}")
        time.sleep(0.02)
    done = start_depth - depth
    return done, max(now - start_at, 1e-6), cpu.stop(done)
