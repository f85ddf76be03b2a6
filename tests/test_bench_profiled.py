"""bench.profiled's restart of a thread's profile: another thread's profiler cannot be
restarted from the signal handler, so its stats at the restart are taken off at its end."""

from __future__ import annotations

import cProfile
import pstats
import time

from bench.profiled import dump_since


def warm_up() -> None:
    sum(range(1000))


def work() -> None:
    sum(range(1000))


def test_what_a_thread_did_before_the_restart_is_left_out(tmp_path):
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    for _ in range(5):
        warm_up()
        work()
    profile.snapshot_stats()  # what start_over notes, the profile still running
    baseline = profile.stats
    for _ in range(3):
        work()
    profile.disable()
    dump_since(profile, baseline, str(tmp_path / "thread"))
    left = pstats.Stats(str(tmp_path / "thread")).stats  # as bench.scenarios reads it
    calls = {func[2]: counts[1] for func, counts in left.items()}
    assert calls["work"] == 3
    assert "warm_up" not in calls
    (work_key,) = [f for f in left if f[2] == "work"]
    assert all(n > 0 for n, *_ in left[work_key][4].values())
