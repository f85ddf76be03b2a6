"""Scenario 6: ours with each pool a Celery user has on Fargate, and where its jobs wait.

Each variant is `pool:concurrency[:prefetch[:nice]]` (Celery's --pool and --concurrency,
WORKER_PREFETCH_MULTIPLIER and WORKER_POOL_NICE; left out: the worker's defaults, as
scenario 4 runs it, so both measure the same shipped worker): prefork with 1, 2, 4
processes; threads; solo (one job at a time, the process per core of "one process per core").
A `/no-lease` suffix runs that worker without its STARTED write, so without the run lease
(bench.write_cost's hook: measurement only, no setting of the product): what the guarantee
costs in jobs/s and CPU, measured beside the worker that keeps it.
Every variant drains the same pre-filled queue of no-op jobs, the variants alternating
within each run, with the worker's own timestamps on (tasks.worker.job_waits, every job:
the idle time needs them all): jobs/s, CPU per job, and the p50 of each part of a job's
time in the worker (bench.waits).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import messages, waits, workers
from bench.scenarios import JOBS, _stop, drain
from bench.servers import ServerSet
from bench.stack import Stack


@dataclass(frozen=True)
class Variant:
    pool: str
    concurrency: int
    prefetch: int | None = None  # WORKER_PREFETCH_MULTIPLIER; None: the worker's default
    nice: int | None = None  # WORKER_POOL_NICE; None: the worker's default
    lease: bool = True  # False: no STARTED write, no run lease (measurement only)

    @property
    def name(self) -> str:
        if self.prefetch is None:
            name = f"{self.pool} x{self.concurrency}, the defaults"
        else:
            name = f"{self.pool} x{self.concurrency}, prefetch x{self.prefetch}"
            name = name if self.nice is None else f"{name}, pool nice {self.nice}"
        return name if self.lease else f"{name}, without the run lease"

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """`pool:concurrency[:prefetch[:nice]][/no-lease]`: `prefork:4`, `threads:8:1`,
        `prefork:4:1:0`, `prefork:4/no-lease`."""
        body, slash, flag = spec.partition("/")
        try:
            if slash and flag != "no-lease":
                raise ValueError
            pool, concurrency, *rest = body.split(":")
            if len(rest) > 2:
                raise ValueError
            numbers = (int(n) for n in rest)
            variant = cls(pool, int(concurrency), *numbers, lease=not slash)  # type: ignore[misc]
        except ValueError:
            raise ValueError(
                f"{spec!r} is not pool:concurrency[:prefetch[:nice]][/no-lease]"
            ) from None
        if pool not in ("prefork", "threads", "solo"):
            raise ValueError(f"unknown pool {pool!r} in {spec!r}")
        return variant


DEFAULT_VARIANTS = (
    "prefork:1,prefork:2,prefork:2:1:0,prefork:4,prefork:4/no-lease,prefork:4:1:0,"
    "threads:4:1,threads:8:1,threads:8:4,solo:1:1,solo:1:4"
)


def pools(
    stack: Stack,
    servers: ServerSet,
    variants: list[Variant],
    jobs: int,
    timeout: float,
    window: float,
    runs: int = 1,
    trace_every: int = 1,
) -> list[dict]:
    """One row per variant and run: jobs/s, CPU per job (CpuWindow) and `waits`."""
    rows = []
    task, kwargs = JOBS["noop"]
    for run in range(runs):
        for n, variant in enumerate(variants):
            tag = f"pool{n}-{run}"
            trace = stack.log_dir / f"waits-{tag}.jsonl"
            env = {
                **stack.env(None, tag),
                "JOBS_WAIT_TRACE": str(trace),
                "JOBS_WAIT_TRACE_EVERY": str(trace_every),
            }
            if variant.prefetch is not None:
                env["WORKER_PREFETCH_MULTIPLIER"] = str(variant.prefetch)
            if variant.nice is not None:
                env["WORKER_POOL_NICE"] = str(variant.nice)
            if not variant.lease:
                env[workers.NO_LEASE_ENV] = "1"
            messages.fill(stack.sqs, stack.queue_url(), task, kwargs, jobs, stack.queue_name)
            worker = workers.start(
                "ours",
                env,
                variant.concurrency,
                stack.log_dir,
                tag,
                preexec=stack.worker_preexec,
                pool=variant.pool,
            )
            try:
                done, elapsed, cpu = drain(stack, servers, worker, jobs, timeout, window)
            finally:
                _stop(worker)
            if stack.depth():
                stack.sqs.purge_queue(QueueUrl=stack.queue_url())
                stack.wait_drained(lambda: True, 60)
            rows.append(
                {
                    "variant": variant.name,
                    "pool": variant.pool,
                    "concurrency": variant.concurrency,
                    "prefetch": variant.prefetch,
                    "run": run,
                    "jobs": done,
                    "jobs_per_s": done / elapsed,
                    **cpu,
                    "waits": waits.gaps(waits.read(trace)),
                }
            )
    return rows
