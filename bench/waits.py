"""Where a job waits in ours: the gaps between the worker's own timestamps.

The worker writes them with JOBS_WAIT_TRACE (tasks.worker.job_waits): per sampled job a
consumer line (screened, received, accepted, noticed, finished) and a pool-process line
(ended). `gaps` joins them by job id and gives the p50 and p90 of each part of a job's
time in the worker, and of the time a pool process stays idle between two jobs: on a
backlog a process that waits for its next job is what holds throughput down. The idle
time needs every job traced (JOBS_WAIT_TRACE_EVERY=1): with a sample, two jobs in a row of
one process are not consecutive.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict
from pathlib import Path

# (name, from, to): the parts of a job's time in the worker, in order.
PARTS = (
    ("receive -> Celery's request", "screened", "received"),
    ("request -> a pool process starts it (prefetch queue + hand-off)", "received", "accepted"),
    ("pool process: STARTED write, job, SUCCESS write", "accepted", "ended"),
    ("SUCCESS written -> consumer acks (slot freed)", "ended", "finished"),
    ("started -> consumer hears of it", "accepted", "noticed"),
)
IDLE = "a pool process (or thread) idle between two jobs"


def read(path: Path) -> list[dict]:
    """The trace's lines, joined by job id (a line cut short by a kill is skipped)."""
    jobs: dict[str, dict] = defaultdict(dict)
    if not path.exists():
        return []
    for raw in path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("id"), str):
            job_id = line["id"]
            if "ended" in line:  # the pool process's line: which process (and thread) ran it
                line = {"ended": line["ended"], "runner": (line.get("pid"), line.get("thread"))}
            jobs[job_id].update(line, id=job_id)  # its id even if only the pool's line came
    return list(jobs.values())


def _pcts(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p90_ms": 1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def gaps(jobs: list[dict], skip: float = 0.1) -> dict:
    """p50/p90/mean ms of each of PARTS and of IDLE over the jobs, the first `skip`
    fraction (by receive) left out: start-up is not a wait of the steady state."""
    done = sorted(
        (j for j in jobs if all(k in j for k in ("screened", "accepted", "ended", "finished"))),
        key=lambda j: j["screened"],
    )
    done = done[int(skip * len(done)) :]
    out: dict[str, dict] = {}
    for name, start, end in PARTS:
        values = [j[end] - j[start] for j in done if start in j and end in j]
        if values:
            out[name] = _pcts(values)
    by_process: dict[object, list[dict]] = defaultdict(list)
    for job in done:
        by_process[job.get("runner")].append(job)
    idle = []
    for runs in by_process.values():
        runs.sort(key=lambda j: j["accepted"])
        idle += [max(0.0, b["accepted"] - a["ended"]) for a, b in itertools.pairwise(runs)]
    if idle:
        out[IDLE] = _pcts(idle)
    return out


# (name, from, to): one job's path on an idle stack, submit to SUCCESS seen (scenario 5).
# "submit", "submitted" and "seen" are the bench's clock (time.time(), as the worker's).
LATENCY_PARTS = (
    ("submit (delay() returns)", "submit", "submitted"),
    ("sent -> the consumer has it (long poll returns)", "submitted", "screened"),
    ("the consumer -> a pool process starts it (gate, request, hand-off)", "screened", "accepted"),
    ("in the pool: STARTED write, job, SUCCESS write", "accepted", "ended"),
    ("SUCCESS written -> the client sees it (its 2 ms poll)", "ended", "seen"),
)


def latency_split(marks: list[tuple[str, float, float, float]], traced: list[dict]) -> dict:
    """p50 ms of each of LATENCY_PARTS over the jobs of `marks` (job id, submit, submitted,
    seen) that the worker's trace has whole; the parts' p50s need not add up to the p50."""
    by_id = {j["id"]: j for j in traced}
    values: dict[str, list[float]] = {name: [] for name, _, _ in LATENCY_PARTS}
    joined = 0
    for job_id, submit, submitted, seen in marks:
        times = {**by_id.get(job_id, {}), "submit": submit, "submitted": submitted, "seen": seen}
        if not all(k in times for k in ("screened", "accepted", "ended")):
            continue
        joined += 1
        for name, start, end in LATENCY_PARTS:
            values[name].append(times[end] - times[start])
    out: dict = {name: 1000 * statistics.median(v) for name, v in values.items() if v}
    out["n"] = joined
    return out
