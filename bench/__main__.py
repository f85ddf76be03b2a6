"""`python -m bench` (`make bench`): every scenario against its baselines, in one run.

Prints a Markdown report and writes it, with the raw figures as JSON, to bench/results/.
Emulators on one CPU, workers on another (bench.placement); every timed figure is the
median of `--runs` runs, the kinds alternating (bench.stats). `--quick` (or BENCH_QUICK=1)
is the CI smoke size: one short run of everything, to check the harness (a minute or two).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import placement, pools, report, scenarios
from bench.servers import ServerSet
from bench.stack import Stack
from bench.workers import KINDS

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("calls", "profile", "throughput", "latency", "pools")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="one short run of everything, to check the harness (also BENCH_QUICK=1)",
    )
    p.add_argument("--runs", type=int, help="runs of each timed figure (default 3; quick 1)")
    p.add_argument("--emulator-cpus", help="CPUs of the emulators and the bench, e.g. 0")
    p.add_argument("--worker-cpus", help="CPUs of the workers, e.g. 1 or 1-3")
    p.add_argument("--no-pin", action="store_true", help="leave CPU placement to the kernel")
    p.add_argument("--noop-jobs", type=int, help="no-op jobs per kind in scenarios 1-2")
    p.add_argument("--progress-jobs", type=int, help="progress jobs per kind in scenario 1")
    p.add_argument("--throughput-jobs", type=int, help="jobs per throughput run")
    p.add_argument("--latency-jobs", type=int, help="jobs per latency series")
    p.add_argument("--processes", default=None, help="throughput process counts, e.g. 1,2,4")
    p.add_argument(
        "--pools",
        default=pools.DEFAULT_VARIANTS,
        help="scenario 6's variants of ours, pool:concurrency:prefetch,... (default %(default)s)",
    )
    p.add_argument("--kinds", default=",".join(KINDS), help="which of " + ", ".join(KINDS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=", ".join(SCENARIOS))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    quick = args.quick
    args.noop_jobs = args.noop_jobs or (10 if quick else 300)
    args.progress_jobs = args.progress_jobs or (5 if quick else 60)
    args.throughput_jobs = args.throughput_jobs or (30 if quick else 800)
    args.latency_jobs = args.latency_jobs or (5 if quick else 200)
    args.runs = args.runs or (1 if quick else 3)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    args.processes = [int(n) for n in (args.processes or ("1" if quick else "1,2,4")).split(",")]
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    try:
        args.pools = [pools.Variant.parse(v) for v in args.pools.split(",") if v]
    except ValueError as exc:
        p.error(f"--pools: {exc}")
    if args.quick and args.pools == [
        pools.Variant.parse(v) for v in pools.DEFAULT_VARIANTS.split(",")
    ]:
        args.pools = [pools.Variant.parse("prefork:1")]  # the harness, not a figure
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    try:
        where = placement.plan(args.emulator_cpus, args.worker_cpus, pin=not args.no_pin)
    except ValueError as exc:
        sys.exit(f"python -m bench: {exc}")
    where.pin_self()  # before any thread or emulator starts: they inherit it
    log(f"CPU placement: {where.note}")
    # A SIGTERM unwinds like Ctrl-C, so the servers and workers started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=args.out))
    results: dict = {
        "machine": report.machine(),
        "settings": {
            "noop_jobs": args.noop_jobs,
            "progress_jobs": args.progress_jobs,
            "throughput_jobs": args.throughput_jobs,
            "latency_jobs": args.latency_jobs,
            "processes": args.processes,
            "worker_concurrency": 2,
            "runs": args.runs,
        },
        "placement": where.describe(),
    }
    started = time.monotonic()
    servers = ServerSet(log_dir)
    try:
        stack = Stack(servers.fauxqs(), servers.dynalite(), log_dir)
        stack.worker_preexec = where.worker_preexec()
        results["machine"].update(servers.versions())
        stack.provision()
        stack.poll_cost = scenarios.poll_cost(stack, servers)
        results["settings"]["fauxqs_ms_per_depth_poll"] = round(1000 * stack.poll_cost, 3)
        timeout = 120 if args.quick else 600
        if "calls" in args.scenarios:
            log(f"scenarios 1-2: requests and CPU per job ({', '.join(args.kinds)})")
            _run(
                results,
                "calls",
                lambda: scenarios.calls_and_cpu(
                    stack,
                    servers,
                    args.kinds,
                    {"noop": args.noop_jobs, "progress": args.progress_jobs},
                    processes=2,
                    timeout=timeout,
                    warm=not args.quick,
                ),
            )
        if "profile" in args.scenarios and "ours" in args.kinds:
            log("scenario 2b: cProfile of ours (main thread, pool children, other threads)")
            _run(
                results,
                "profile",
                lambda: scenarios.profile(
                    stack, args.noop_jobs, processes=2, timeout=timeout, warm=not args.quick
                ),
            )
        if "throughput" in args.scenarios:
            log(f"scenario 4: throughput with {args.processes} processes")
            _run(
                results,
                "throughput",
                lambda: scenarios.throughput(
                    stack,
                    servers,
                    args.kinds,
                    args.processes,
                    args.throughput_jobs,
                    timeout,
                    window=5 if args.quick else 20,
                    runs=args.runs,
                ),
            )
        if "latency" in args.scenarios:
            log("scenario 5: latency")
            _run(
                results,
                "latency",
                lambda: scenarios.latency(
                    stack,
                    args.kinds,
                    args.latency_jobs,
                    timeout=30,
                    http=not args.quick,
                    runs=args.runs,
                ),
            )
        if "pools" in args.scenarios and "ours" in args.kinds:
            log(f"scenario 6: ours's pools ({', '.join(v.name for v in args.pools)})")
            _run(
                results,
                "pools",
                lambda: pools.pools(
                    stack,
                    servers,
                    args.pools,
                    args.throughput_jobs,
                    timeout,
                    window=5 if args.quick else 20,
                    runs=args.runs,
                ),
            )
    finally:
        servers.close()
    results.update(report.summaries(results))
    if "ours" in args.kinds:
        results["goals"] = report.goals(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    text = report.markdown(results) + f"\nRun took {results['elapsed_s']} s; logs in {log_dir}.\n"
    (args.out / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "latest.md").write_text(text)
    print(text)
    if results.get("failed"):
        print(f"FAILED scenarios: {results['failed']}", file=sys.stderr)
        sys.exit(1)
    return results


def _run(results: dict, name: str, scenario) -> None:
    """Run one scenario; a failure is reported with the others' figures, not instead."""
    try:
        results[name] = scenario()
    except Exception as exc:  # reported in the output and the exit status
        log(f"scenario {name} failed: {exc!r}")
        results.setdefault("failed", {})[name] = repr(exc)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
