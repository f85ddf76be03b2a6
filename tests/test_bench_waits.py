"""Scenario 5's split of one job's path (bench.waits.latency_split) and scenario 6's
variants (bench.pools.Variant): pure functions, no emulator."""

from __future__ import annotations

import os

import pytest

from bench import report, waits, workers
from bench.pools import DEFAULT_VARIANTS, Variant


def test_latency_split_joins_the_bench_clock_and_the_workers_timestamps_by_job():
    marks = [("a", 100.0, 100.002, 100.012), ("b", 200.0, 200.001, 200.009)]
    traced = [
        {"id": "a", "screened": 100.003, "accepted": 100.004, "ended": 100.010},
        {"id": "b", "screened": 200.001, "accepted": 200.002, "ended": 200.008},
        {"id": "c", "screened": 1.0, "accepted": 2.0, "ended": 3.0},  # not one of ours
    ]
    split = waits.latency_split(marks, traced)
    assert split["n"] == 2
    assert split["submit (delay() returns)"] == pytest.approx(1.5)
    assert split["in the pool: STARTED write, job, SUCCESS write"] == pytest.approx(6.0)
    assert split["SUCCESS written -> the client sees it (its 2 ms poll)"] == pytest.approx(1.5)


def test_latency_split_leaves_out_a_job_the_trace_does_not_have_whole():
    marks = [("a", 1.0, 1.001, 1.01)]
    split = waits.latency_split(marks, [{"id": "a", "screened": 1.002}])
    assert split == {"n": 0}


def test_a_variant_without_prefetch_runs_the_workers_defaults():
    assert Variant.parse("prefork:4") == Variant("prefork", 4, None, None)
    assert Variant.parse("prefork:4").name == "prefork x4, the defaults"
    assert Variant.parse("prefork:4:1:0") == Variant("prefork", 4, 1, 0)
    with pytest.raises(ValueError):
        Variant.parse("prefork:4:1:0:9")
    # The default set measures the shipped worker as scenario 4 does, at each count.
    defaults = [Variant.parse(v) for v in DEFAULT_VARIANTS.split(",")]
    assert {v.concurrency for v in defaults if v.pool == "prefork" and v.prefetch is None} == {
        1,
        2,
        4,
    }


def _row(kind: str, rate: float, run_queue: dict | None = None) -> dict:
    row = {
        "kind": kind,
        "processes": 4,
        "jobs_per_s": rate,
        "cpu": {"main_thread": 0.5, "main_other_threads": 0.1, "children": 1.5, "total": 2.1},
        "emulators": {"fauxqs": 0.02, "dynalite": 1.8},
        "driver_ms": 0.2,
    }
    if run_queue is not None:
        row["run_queue_ms"] = run_queue
    return row


def test_a_worker_whose_pool_waits_for_the_cpu_is_not_called_idle():
    """Under the "CPU allows" ceiling, pool processes that wait on the run queue longer
    than they compute are held back by the CPU they share, not by a hand-off."""
    cores = report.Sides(1, 1, False)
    floor = _row("floor", 1200)
    waiting = report._throughput_why(
        _row("ours", 270, {"main": 1.0, "children": 7.3}), floor, "floor", cores
    )
    assert "waited 7.30 ms per job for a CPU" in waiting
    assert "not CPU-bound" not in waiting
    idle = report._throughput_why(
        _row("ours", 270, {"main": 0.1, "children": 0.2}), floor, "floor", cores
    )
    assert "not CPU-bound" in idle


def test_run_queue_split_reads_this_process_and_its_children():
    waited = workers.run_queue_split([os.getpid()])
    assert set(waited) == {"main", "children"}
    assert waited["main"] >= 0 and waited["children"] >= 0
    assert workers.run_queue_split([2**22 + 12345]) == {"main": 0.0, "children": 0.0}


def test_a_no_lease_variant_is_measured_beside_the_default_and_its_cost_said():
    """Section 6's `/no-lease` variant runs the worker through bench.write_cost's hook (no
    STARTED write); the goals' "why" states the run lease's cost from the pair, run by run."""
    variant = Variant.parse("prefork:4/no-lease")
    assert not variant.lease and variant.prefetch is None
    assert variant.name == "prefork x4, the defaults, without the run lease"
    assert "prefork:4/no-lease" in DEFAULT_VARIANTS.split(",")
    with pytest.raises(ValueError):
        Variant.parse("prefork:4/no-leash")

    def row(run: int, lease: bool, cpu: float, dynalite: float, rate: float) -> dict:
        name = Variant("prefork", 4, lease=lease).name
        return {
            "variant": name,
            "run": run,
            "concurrency": 4,
            "cpu": {"total": cpu},
            "emulators": {"dynalite": dynalite},
            "jobs_per_s": rate,
        }

    rows = [
        row(0, True, 2.0, 1.5, 300),
        row(0, False, 1.2, 0.6, 420),
        row(1, True, 2.2, 1.7, 280),
        row(1, False, 1.3, 0.7, 400),
    ]
    said = report.pools_report.lease_cost(rows)
    assert "0.85 ms of worker CPU and 0.95 ms of dynalite CPU" in said
    assert "290 jobs/s with it, 410 without" in said
    assert report.pools_report.lease_cost(rows[::2]) == ""


def test_a_job_traced_by_its_pool_process_only_keeps_its_id(tmp_path):
    """The trace is read while the worker runs: a job whose consumer line is not written
    yet has only the pool process's line, and still joins by its id (the latency run's
    KeyError of 2026-12-06)."""
    trace = tmp_path / "waits.jsonl"
    trace.write_text('{"id": "a", "pid": 1, "thread": 2, "ended": 5.0}\n')
    (job,) = waits.read(trace)
    assert job["id"] == "a" and job["ended"] == 5.0
    assert waits.latency_split([("a", 1.0, 2.0, 6.0)], [job]) == {"n": 0}
