"""Scenario 6: ours with each pool a Celery user has on Fargate, and where its jobs wait.

Each variant is `pool:concurrency[:prefetch[:nice]]` (Celery's --pool and --concurrency,
WORKER_PREFETCH_MULTIPLIER and WORKER_POOL_NICE; left out: the worker's defaults, as
scenario 4 runs it, so both measure the same shipped worker): prefork with 1, 2, 4
processes; threads; solo (one job at a time, the process per core of "one process per core").
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

    @property
    def name(self) -> str:
        if self.prefetch is None:
            return f"{self.pool} x{self.concurrency}, the defaults"
        name = f"{self.pool} x{self.concurrency}, prefetch x{self.prefetch}"
        return name if self.nice is None else f"{name}, pool nice {self.nice}"

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """`pool:concurrency[:prefetch[:nice]]`: `prefork:4`, `threads:8:1`, `prefork:4:1:0`."""
        try:
            pool, concurrency, *rest = spec.split(":")
            if len(rest) > 2:
                raise ValueError
            variant = cls(pool, int(concurrency), *(int(n) for n in rest))
        except ValueError:
            raise ValueError(f"{spec!r} is not pool:concurrency[:prefetch[:nice]]") from None
        if pool not in ("prefork", "threads", "solo"):
            raise ValueError(f"unknown pool {pool!r} in {spec!r}")
        return variant


DEFAULT_VARIANTS = (
    "prefork:1,prefork:2,prefork:2:1:0,prefork:4,prefork:4:1:0,"
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
