"""`python -m bench.profiled OUT <celery args>`: `celery <celery args>` under cProfile.

Profiles the main process's main thread (Celery's event loop: consumer, transport,
dispatch to the pool) and each pool child, with a per-thread CPU clock, so time spent
blocked in epoll or a pipe read is not counted. The main process writes OUT (pstats
format) when it exits; each child writes OUT.child-<pid> when Celery's
worker_process_shutdown signal runs in it. SIGUSR2 (unused by a Celery worker unless
CELERY_RDBSIG is set; children inherit the handler) starts a process's profile over,
so start-up and warm-up stay out of it. For the benchmarks' profile scenario only:
the profiler's overhead makes the run useless for timing.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["celery", *args]
    current = [cProfile.Profile(time.thread_time)]
    main_pid = os.getpid()

    def start_over(*_) -> None:
        current[0].disable()
        current[0] = cProfile.Profile(time.thread_time)
        current[0].enable()

    def dump_child(**_) -> None:
        if os.getpid() == main_pid:
            return
        current[0].disable()
        current[0].dump_stats(f"{out}.child-{os.getpid()}")

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


if __name__ == "__main__":
    main()
