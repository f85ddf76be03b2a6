"""`python -m bench.profiled OUT <celery args>`: `celery <celery args>` under cProfile.

Profiles the main process's main thread (Celery's event loop: consumer, transport,
dispatch to the pool) and each pool child, with a per-thread CPU clock, so time spent
blocked in epoll or a pipe read is not counted. The main process writes OUT (pstats
format) when it exits; each child writes OUT.child-<pid> when Celery's
worker_process_shutdown signal runs in it; each other thread of the main process (SQS
I/O, timers) writes OUT.thread-<pid>-<ident> when it ends. SIGUSR2
(unused by a Celery worker unless CELERY_RDBSIG is set; children inherit the handler)
starts a process's profiles over (a thread's: what it did before is subtracted),
so start-up and warm-up stay out of it. For the benchmarks' profile scenario only:
the profiler's overhead makes the run useless for timing.
"""

from __future__ import annotations

import cProfile
import marshal
import os
import signal
import sys
import threading
import time


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["celery", *args]
    current = [cProfile.Profile(time.thread_time)]
    main_pid = os.getpid()

    threads: dict[int, cProfile.Profile] = {}  # the main process's other threads, live
    baselines: dict[int, dict] = {}  # their stats when the profile was started over

    def start_over(*_) -> None:
        current[0].disable()
        current[0] = cProfile.Profile(time.thread_time)
        current[0].enable()
        # Another thread's profile cannot be restarted from here: note where it stands
        # (snapshot_stats reads it without disabling it) and take that off at its end.
        for ident, profile in list(threads.items()) if os.getpid() == main_pid else []:
            profile.snapshot_stats()
            baselines[ident] = profile.stats

    def dump_child(**_) -> None:
        if os.getpid() == main_pid:
            return
        current[0].disable()
        current[0].dump_stats(f"{out}.child-{os.getpid()}")

    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        if os.getpid() != main_pid:
            return thread_run(self)
        ident = threading.get_ident()
        profile = threads[ident] = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            thread_run(self)
        finally:
            profile.disable()
            threads.pop(ident, None)
            dump_since(profile, baselines.pop(ident, {}), f"{out}.thread-{os.getpid()}-{ident}")

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    os.register_at_fork(after_in_child=start_over)  # a child's own profile, not the parent's
    signal.signal(signal.SIGUSR2, start_over)
    from celery import signals
    from celery.__main__ import main as celery_main

    signals.worker_process_shutdown.connect(dump_child, weak=False)
    current[0].enable()
    try:
        celery_main()
    finally:
        current[0].disable()
        current[0].dump_stats(out)


def dump_since(profile: cProfile.Profile, baseline: dict, path: str) -> None:
    """Write (pstats format) what a stopped profile holds beyond `baseline`. Not
    Profile.dump_stats: it takes the stats anew from the profiler."""
    profile.create_stats()
    with open(path, "wb") as f:
        marshal.dump(since(profile.stats, baseline), f)


def since(stats: dict, baseline: dict) -> dict:
    """pstats' raw stats minus an earlier snapshot of the same profile."""
    out = {}
    for func, (cc, nc, tt, ct, callers) in stats.items():
        b_cc, b_nc, b_tt, b_ct, b_callers = baseline.get(func, (0, 0, 0.0, 0.0, {}))
        if nc - b_nc <= 0:
            continue
        calls = {}
        for caller, counts in callers.items():
            earlier = b_callers.get(caller, (0,) * len(counts))
            left = tuple(a - b for a, b in zip(counts, earlier, strict=True))
            if left[0] > 0:
                calls[caller] = left
        out[func] = (cc - b_cc, nc - b_nc, tt - b_tt, ct - b_ct, calls)
    return out


if __name__ == "__main__":
    main()
