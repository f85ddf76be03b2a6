"""The bench's arithmetic over repeated runs (bench.stats, bench.report.summaries) and its
CPU placement (bench.placement): pure functions, no emulator, no worker."""

from __future__ import annotations

import pytest

from bench import placement, report, stats


def test_spread_is_the_median_with_min_and_max():
    assert stats.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats.spread([1.0, 2.0, 3.0, 10.0])["median"] == 2.5
    with pytest.raises(ValueError):
        stats.spread([])


def test_ratios_are_taken_run_by_run_then_their_median():
    # The machine slows down in run 1: both kinds halve, their ratio does not move.
    rows = [
        {"kind": "stock", "run": 0, "v": 100.0},
        {"kind": "ours", "run": 0, "v": 120.0},
        {"kind": "stock", "run": 1, "v": 50.0},
        {"kind": "ours", "run": 1, "v": 60.0},
        {"kind": "stock", "run": 2, "v": 100.0},
        {"kind": "ours", "run": 2, "v": 110.0},
    ]
    ratio = stats.paired_ratios(rows, "v", "ours", "stock")
    assert ratio == {"median": pytest.approx(1.2), "min": 1.1, "max": pytest.approx(1.2), "n": 3}
    # The ratio of the medians (110 / 100) would hide that ours led in every run by 10-20%.
    assert stats.paired_ratios(rows, "v", "ours", "floor") is None


def test_a_note_when_the_spread_is_wider_than_the_difference():
    ours, stock = stats.spread([100.0, 140.0, 120.0]), stats.spread([110.0, 112.0, 111.0])
    assert stats.spread_note(ours, stock) == "spread 40 wider than the difference 9"
    steady = stats.spread([200.0, 205.0, 210.0])
    assert stats.spread_note(steady, stock) is None
    assert stats.fmt(ours, ".3g") == "120 (100..140)"
    assert stats.fmt(stats.spread([5.0])) == "5"  # one run: no range to show


def test_summaries_take_the_median_run_and_pair_the_ratios():
    def row(kind: str, run: int, rate: float) -> dict:
        return {
            "kind": kind,
            "processes": 2,
            "run": run,
            "jobs": 100,
            "jobs_per_s": rate,
            "cpu": {"total": 4.0},
            "emulators": {"fauxqs": 1.0},
            "driver_ms": 1.0,
        }

    rates = {"stock": [100.0, 90.0, 80.0], "ours": [150.0, 99.0, 160.0], "floor": [300.0] * 3}
    results = {
        "throughput": [row(k, run, rates[k][run]) for run in range(3) for k in rates],
        "machine": {"cores": 2},
    }
    tp = {r["kind"]: r for r in report.summaries(results)["throughput_summary"]}
    ours = tp["ours"]
    assert ours["jobs_per_s"] == 150.0 and ours["spread"]["min"] == 99.0
    assert ours["vs_stock"]["median"] == pytest.approx(1.5)  # 1.5, 1.1, 2.0
    assert ours["vs_floor"]["median"] == pytest.approx(0.5)
    assert "vs_stock" not in tp["stock"]
    # Ours's own runs swing by more than it leads stock, yet it led in every pair.
    assert ours["note"] == (
        "spread 61 wider than the difference 60; "
        "the run-by-run ratios (1.50x (1.10..2.00x)) all lie on one side of 1.00x"
    )
    # 4 ms of worker CPU a job at 150 jobs/s keeps 0.6 of a CPU busy; 2 ms on the other side.
    assert ours["worker_cores_busy"] == pytest.approx(0.6)
    assert ours["client_cores_busy"] == pytest.approx(0.3)


def test_placement_separates_emulators_and_workers_when_it_can():
    two = placement.plan(available=[0, 1])
    assert two.emulators == {0} and two.workers == {1} and two.pinned
    assert "workers on CPU 1" in two.note
    custom = placement.plan("0", "1-3", available=[0, 1, 2, 3])
    assert custom.workers == {1, 2, 3} and custom.worker_cores == 3
    one = placement.plan(available=[0])
    assert not one.pinned and "only 1 CPU" in one.note and one.worker_preexec() is None
    assert not placement.plan(pin=False, available=[0, 1]).pinned
    with pytest.raises(ValueError):
        placement.plan("0", "5", available=[0, 1])
