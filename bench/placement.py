"""Which CPUs the emulators and the workers run on.

On AWS the emulators' work is done by SQS and DynamoDB, not by the worker's vCPU, so the
bench gives them their own CPU: by default the emulators (and the bench itself, which
submits and polls like a client) on the first CPU this process may use, every worker
process (and the pool children it forks) on the second. A machine with one CPU cannot
separate them: the report then says that its throughput and latency include the
emulators' cost.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    emulators: frozenset[int] | None  # None: not pinned
    workers: frozenset[int] | None
    available: int  # CPUs this process may use
    note: str

    @property
    def pinned(self) -> bool:
        return self.emulators is not None and self.workers is not None

    @property
    def worker_cores(self) -> int:
        return len(self.workers) if self.workers else self.available

    @property
    def emulator_cores(self) -> int:
        return len(self.emulators) if self.emulators else self.available

    def pin_self(self) -> None:
        """Put this process on the emulators' CPUs; the emulators, started later, inherit
        it (call before any thread is started: a thread keeps the mask it was born with)."""
        if self.emulators is not None:
            os.sched_setaffinity(0, self.emulators)

    def worker_preexec(self) -> Callable[[], None] | None:
        """For Popen(preexec_fn=...): the worker and every process it forks run on the
        workers' CPUs from their first instruction (no thread escapes the mask)."""
        if self.workers is None:
            return None
        return functools.partial(os.sched_setaffinity, 0, self.workers)

    def describe(self) -> dict:
        return {
            "emulators_cpus": sorted(self.emulators) if self.emulators else None,
            "workers_cpus": sorted(self.workers) if self.workers else None,
            "available_cpus": self.available,
            "note": self.note,
        }


def parse_cpus(text: str) -> frozenset[int]:
    """ "0", "0,2" or "2-3" (taskset's list syntax) -> CPU numbers."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    if not cpus:
        raise ValueError(f"no CPU in {text!r}")
    return frozenset(cpus)


def _available() -> list[int]:
    if not hasattr(os, "sched_getaffinity"):  # not Linux
        return []
    return sorted(os.sched_getaffinity(0))


def plan(
    emulators: str | None = None,
    workers: str | None = None,
    pin: bool = True,
    available: list[int] | None = None,
) -> Placement:
    """The placement for this machine: `emulators`/`workers` as given (CPU lists), else
    the first and the second available CPU; unpinned when asked or impossible."""
    cpus = _available() if available is None else available
    count = len(cpus) or (os.cpu_count() or 1)
    shared = "emulators and workers share the machine's CPUs, so throughput and latency "
    shared += "include the emulators' cost and swing with it"
    if not pin:
        return Placement(None, None, count, f"not pinned (--no-pin): {shared}")
    if not cpus:
        return Placement(None, None, count, f"CPU affinity not supported here: {shared}")
    if emulators is None and workers is None and len(cpus) < 2:
        return Placement(None, None, count, f"only {len(cpus)} CPU available: {shared}")
    emu = parse_cpus(emulators) if emulators else frozenset(cpus[:1])
    rest = [c for c in cpus if c not in emu]
    work = parse_cpus(workers) if workers else frozenset(rest[:1] or cpus[-1:])
    unknown = (emu | work) - set(cpus)
    if unknown:
        raise ValueError(f"CPUs {sorted(unknown)} are not available (have {cpus})")
    note = f"emulators and the bench on CPU {_list(emu)}, workers on CPU {_list(work)}"
    if emu & work:
        note += f" (CPU {_list(emu & work)} shared: the emulators' cost is partly the worker's)"
    unused = set(cpus) - emu - work
    if unused:
        note += f"; CPU {_list(frozenset(unused))} unused"
    return Placement(emu, work, count, note)


def _list(cpus: frozenset[int]) -> str:
    return ",".join(map(str, sorted(cpus)))
