"""Starting, measuring and stopping the worker kinds the benchmarks compare.

Kinds: `stock` (bench/stock_app.py), `ours` (`celery -A tasks worker` as configured,
nothing tuned: its receive batching adapts by itself) and `floor` (bench/floor.py, one
process per slot).

CPU is read from /proc (user+sys; processes in clock ticks, a main thread in schedstat's
nanoseconds) and split three ways, so a report can say where it goes: the main
process's main thread (Celery's event loop: consumer, transport, dispatch to the pool),
its other threads (our SQS I/O thread, botocore calls made off the loop), and its
descendants (the prefork pool's children, which run the job and write its record).
Children that exited are counted through the main process's cutime/cstime, which the
kernel adds when it reaps them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import stop_process

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

APPS = {"ours": "tasks", "stock": "bench.stock_app"}
KINDS = ("stock", "ours", "floor")
CPU_PARTS = ("main_thread", "main_other_threads", "children")


@dataclass(frozen=True)
class Stat:
    ppid: int
    own: float  # user+sys seconds of the process (all its threads)
    reaped: float  # cutime+cstime: children it has waited for


def _stat(path: str) -> Stat | None:
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): ppid is field 4, utime..cstime 14-17.
    ticks = [int(v) for v in fields[11:15]]
    return Stat(int(fields[1]), (ticks[0] + ticks[1]) / CLK_TCK, (ticks[2] + ticks[3]) / CLK_TCK)


def _all_stats() -> dict[int, Stat]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(f"/proc/{entry}/stat")
            if stat is not None:
                stats[int(entry)] = stat
    return stats


def _descendants(root: int, stats: dict[int, Stat]) -> list[int]:
    out, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [child for child, s in stats.items() if s.ppid == pid]
        out += kids
        frontier += kids
    return out


def descendants(pid: int) -> list[int]:
    return _descendants(pid, _all_stats())


def _thread_seconds(pid: int) -> float | None:
    """CPU seconds of a process's main thread: schedstat's nanoseconds, else clock ticks."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        thread = _stat(f"/proc/{pid}/task/{pid}/stat")
        return thread.own if thread else None


def cpu_split(roots: list[int]) -> dict[str, float]:
    """CPU seconds of `roots` so far, by part (CPU_PARTS); "total" is their sum.

    Process totals come in clock ticks (10 ms), so over a short window a small part
    can come out slightly negative: `diff` clamps it to 0.
    """
    stats = _all_stats()
    parts = dict.fromkeys(CPU_PARTS, 0.0)
    for root in roots:
        if root not in stats:
            continue
        thread = _thread_seconds(root)
        main_thread = stats[root].own if thread is None else thread
        parts["main_thread"] += main_thread
        parts["main_other_threads"] += stats[root].own - main_thread
        # A live descendant's `reaped` holds its own exited children.
        parts["children"] += stats[root].reaped + sum(
            stats[pid].own + stats[pid].reaped for pid in _descendants(root, stats)
        )
    parts["total"] = sum(parts[p] for p in CPU_PARTS)
    return parts


def _waited(pid: int) -> float:
    """Seconds the threads of `pid` spent runnable but waiting for a CPU (schedstat's
    second field: time on a run queue), summed; 0 where the kernel does not keep it."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_queue_split(roots: list[int]) -> dict[str, float]:
    """Seconds the workers' live threads waited for a CPU so far: `main` (the main process's
    threads) and `children` (its descendants: the pool processes). A process that waits
    here is held back by the CPU even where its CPU time is low (other processes on the
    same CPU, a lower priority: WORKER_POOL_NICE); exited processes are not counted."""
    stats = _all_stats()
    out = {"main": 0.0, "children": 0.0}
    for root in roots:
        if root in stats:
            out["main"] += _waited(root)
            out["children"] += sum(_waited(pid) for pid in _descendants(root, stats))
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """after - before by part, each at least 0; "total" (if present) is their sum."""
    out = {k: max(0.0, after[k] - before.get(k, 0.0)) for k in after if k != "total"}
    if "total" in after:
        out["total"] = sum(out.values())
    return out


@dataclass
class Worker:
    kind: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, by part, with "total"."""
        return cpu_split([p.pid for p in self.procs])

    def run_queue(self) -> dict[str, float]:
        """Seconds spent waiting for a CPU so far: `main` and `children` (run_queue_split)."""
        return run_queue_split([p.pid for p in self.procs])

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc, timeout=20)


# Set in a worker's env: it runs without its STARTED write, so without the run lease
# (bench.write_cost's hook; scenario 6's `/no-lease` variants). Measurement only.
NO_LEASE_ENV = "BENCH_WRITE_NO_STARTED"
# How scenario 5 names its series of ours without the run lease.
WITHOUT_LEASE = "delay(), without the run lease (measurement only)"


def celery_command(kind: str, processes: int, tag: str, pool: str = "prefork") -> list[str]:
    return [
        "-m",
        "celery",
        "-A",
        APPS[kind],
        "worker",
        "--loglevel=WARNING",
        f"--pool={pool}",
        f"--concurrency={processes}",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={kind}-{tag}@bench",
    ]


def start(
    kind: str,
    env: dict[str, str],
    processes: int,
    log_dir: Path,
    tag: str,
    profile_to: Path | None = None,
    preexec: Callable[[], None] | None = None,
    pool: str = "prefork",
) -> Worker:
    """Start `kind` with `processes` pool processes (floor: that many loop processes);
    `pool` is Celery's --pool (threads: `processes` threads; solo: one job at a time).

    `preexec`: run in each child before it starts (bench.placement pins it to the
    workers' CPUs; the pool children it forks inherit the mask).

    `profile_to`: run a Celery kind under bench.profiled, which writes a cProfile of
    the main process's main thread there when it exits.
    """
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    worker = Worker(kind)
    if kind == "floor":
        commands = [[sys.executable, "-m", "bench.floor"] for _ in range(processes)]
    elif profile_to is not None:
        commands = [
            [
                sys.executable,
                "-m",
                "bench.profiled",
                str(profile_to),
                *celery_command(kind, processes, tag, pool)[2:],
            ]
        ]
    elif env.get(NO_LEASE_ENV):
        command = celery_command(kind, processes, tag, pool)[2:]
        commands = [[sys.executable, "-m", "bench.write_cost", "--as-worker", *command]]
    else:
        commands = [[sys.executable, *celery_command(kind, processes, tag, pool)]]
    if kind != "floor":
        full_env["WORKER_CONCURRENCY"] = str(processes)  # as --concurrency says
    for n, command in enumerate(commands):
        log = open(log_dir / f"worker-{kind}-{tag}-{n}.log", "wb")  # noqa: SIM115
        worker.procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=preexec,
            )
        )
    return worker
