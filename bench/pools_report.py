"""Section 6 of the report: ours's pool choices, and where a job waits in each."""

from __future__ import annotations

import statistics

from bench import waits
from bench.stats import fmt, spread

SHORT = {
    waits.PARTS[0][0]: "receive -> request",
    waits.PARTS[1][0]: "request -> started (prefetch + hand-off)",
    waits.PARTS[2][0]: "in the pool (STARTED, job, SUCCESS)",
    waits.PARTS[3][0]: "SUCCESS -> ack",
    waits.PARTS[4][0]: "started -> consumer hears",
    waits.IDLE: "process idle between jobs",
}


def summarize(rows: list[dict]) -> list[dict]:
    """Per variant (in the order run): jobs/s spread, CPU ms per job and the median over
    runs of each wait's p50."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        cpu = [r["cpu"]["total"] for r in mine]
        wait_p50 = {
            part: statistics.median(r["waits"][part]["p50_ms"] for r in with_part)
            for part in SHORT
            if (with_part := [r for r in mine if part in r.get("waits", {})])
        }
        out.append(
            {
                "variant": name,
                "jobs_per_s": spread(r["jobs_per_s"] for r in mine),
                "cpu_ms": statistics.median(cpu),
                "busy": statistics.median(r["cpu"]["total"] * r["jobs_per_s"] / 1000 for r in mine),
                "dynalite_ms": statistics.median(r["emulators"].get("dynalite", 0) for r in mine),
                "dynalite_busy": statistics.median(
                    r["emulators"].get("dynalite", 0) * r["jobs_per_s"] / 1000 for r in mine
                ),
                "waits_p50_ms": wait_p50,
                "pool_waited_ms": statistics.median(
                    (r.get("run_queue_ms") or {}).get("children", 0) for r in mine
                ),
            }
        )
    return out


def markdown(rows: list[dict], table) -> list[str]:
    """The section's lines; `table` is report._table."""
    summary = summarize(rows)
    runs = len({r["run"] for r in rows})
    return [
        "",
        "## 6. Pools: ours with each pool choice, and where a job waits in it",
        "",
        f"Median of {runs} run(s), the variants alternating, with (min..max). A backlog of "
        "no-op jobs as in section 4, with the worker's own timestamps on "
        "(tasks.worker.job_waits, every job); waits are the median over runs "
        'of each part\'s p50, ms. "CPUs busy" = CPU per job x jobs/s; "pool waiting for a CPU" '
        "= ms per job the pool processes were runnable but not running (schedstat).",
        "",
        table(
            [
                "variant",
                "jobs/s",
                "worker CPU ms/job",
                "worker CPUs busy",
                "dynalite CPU ms/job",
                "dynalite CPUs busy",
                "pool waiting for a CPU ms/job",
                *SHORT.values(),
            ],
            [
                [
                    s["variant"],
                    fmt(s["jobs_per_s"]),
                    s["cpu_ms"],
                    s["busy"],
                    s["dynalite_ms"],
                    s["dynalite_busy"],
                    s["pool_waited_ms"],
                    *(s["waits_p50_ms"].get(part) for part in SHORT),
                ]
                for s in summary
            ],
        ),
    ]


def lease_figures(rows: list[dict]) -> dict | None:
    """What the run lease costs, from section 6's pair "prefork xN, the defaults" with and
    without it, run by run (medians): None without such a pair."""
    plain = {r["run"]: r for r in rows if r["variant"].endswith("the defaults")}
    pairs = [
        (plain[r["run"]], r)
        for r in rows
        if r["variant"].endswith("without the run lease")
        and r["run"] in plain
        and plain[r["run"]]["concurrency"] == r["concurrency"]
    ]
    if not pairs:
        return None
    return {
        "processes": pairs[0][0]["concurrency"],
        "runs": len(pairs),
        "cpu_ms": statistics.median(a["cpu"]["total"] - b["cpu"]["total"] for a, b in pairs),
        "dynalite_ms": statistics.median(
            a["emulators"].get("dynalite", 0) - b["emulators"].get("dynalite", 0) for a, b in pairs
        ),
        "with_jobs_per_s": statistics.median(a["jobs_per_s"] for a, _ in pairs),
        "without_jobs_per_s": statistics.median(b["jobs_per_s"] for _, b in pairs),
    }


def lease_cost(rows: list[dict]) -> str:
    """lease_figures as a sentence for the goals' "why" ("" without the pair)."""
    f = lease_figures(rows)
    if f is None:
        return ""
    return (
        f" The run lease (its STARTED write, which lets one delivery at a time run a job) "
        f"costs, measured in section 6 at {f['processes']} processes over {f['runs']} "
        f"run(s): {f['cpu_ms']:.2f} ms of worker CPU and {f['dynalite_ms']:.2f} ms of "
        f"dynalite CPU per job; {f['with_jobs_per_s']:.0f} jobs/s with it, "
        f"{f['without_jobs_per_s']:.0f} without."
    )
