"""Starting, measuring and stopping the worker kinds the benchmarks compare.

Kinds: `ours` (`celery -A tasks worker` as configured), `ours-batched` (the same with
JOBS_RECEIVE_BATCH=10 and a prefetch of 20), `stock`
(bench/stock_app.py) and `floor` (bench/floor.py, one process per slot).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import stop_process

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

APPS = {"ours": "tasks", "ours-batched": "tasks", "stock": "bench.stock_app"}
KINDS = ("stock", "ours", "ours-batched", "floor")
BATCH_RECEIVE = 10


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+sys CPU seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(roots: list[int]) -> float:
    """user+sys CPU of `roots` and every live descendant."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    total, frontier, seen = 0.0, list(roots), set()
    while frontier:
        pid = frontier.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        frontier.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


@dataclass
class Worker:
    kind: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds([p.pid for p in self.procs])

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc, timeout=20)


def start(kind: str, env: dict[str, str], processes: int, log_dir: Path, tag: str) -> Worker:
    """Start `kind` with `processes` pool processes (floor: that many loop processes)."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    worker = Worker(kind)
    if kind == "floor":
        commands = [[sys.executable, "-m", "bench.floor"] for _ in range(processes)]
    else:
        commands = [[sys.executable, "-m", "celery", "-A", APPS[kind], "worker",
                     "--loglevel=WARNING", "--pool=prefork", f"--concurrency={processes}",
                     "--without-heartbeat", "--without-gossip", "--without-mingle",
                     f"--hostname={kind}-{tag}@bench"]]
        if kind == "ours-batched":
            # Receive only when 10 slots are free, and prefetch twice that: one batch
            # runs while the next is fetched (the tuning the README gives for short jobs).
            full_env["JOBS_RECEIVE_BATCH"] = str(BATCH_RECEIVE)
            commands[0].append(f"--prefetch-multiplier={-(-2 * BATCH_RECEIVE // processes)}")
    for n, command in enumerate(commands):
        log = open(log_dir / f"worker-{kind}-{tag}-{n}.log", "wb")  # noqa: SIM115
        worker.procs.append(subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True))
    return worker
