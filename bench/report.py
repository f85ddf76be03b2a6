"""Machine details, Markdown tables and the goals check of one benchmark run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

from bench import pools_report, prices, stats, waiting_cost, waits, workers

# The goals of issues 9 and 19, for `ours` with its defaults, against baselines of the same run.
SQS_PER_JOB = 0.25  # SQS requests per no-op job on a backlog, at most
CPU_VS_FLOOR = 2.0  # worker CPU per no-op job, at most this many times the floor's
THROUGHPUT_VS_STOCK = 1.0  # at every process count, at least stock Celery's
# At FLOOR_PROCESSES, at least this share of the floor's: issue 19's step (35%) on the way
# to 70%.
THROUGHPUT_VS_FLOOR = 0.35
FLOOR_PROCESSES = 4

# Where CPU goes: the worker's parts (bench.workers.CPU_PARTS), then the emulators.
WORKER_PARTS = ("main_thread", "main_other_threads", "children")
PART_NAMES = {
    "main_thread": "main thread (event loop)",
    "main_other_threads": "main process's other threads",
    "children": "pool children",
    "fauxqs": "fauxqs",
    "dynalite": "dynalite",
}


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    versions = {}
    for package in ("celery", "kombu", "boto3"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        node = "absent"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "node": node,
        **versions,
    }


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) < 5e-4:
        return "0"  # clock-tick differences leave float dust
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _actions(calls: dict) -> str:
    return ", ".join(f"{a} {v:.2f}" for a, v in sorted(calls.items())) or "-"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "-"


def costs(calls: list[dict]) -> list[dict]:
    out = []
    for row in calls:
        if row["job"] != "noop":
            continue
        out.append(
            {
                "kind": row["kind"],
                **prices.cost_per_million(row, consistent_reads=row["kind"] != "stock"),
            }
        )
    return out


# --- where the CPU goes ----------------------------------------------------------------
def parts(row: dict) -> dict[str, float]:
    """ms per job of one measured row, by part: the worker's, then each emulator's."""
    cpu, emulators = row.get("cpu", {}), row.get("emulators", {})
    out = {p: cpu.get(p, 0.0) for p in WORKER_PARTS}
    out.update({name: emulators.get(name, 0.0) for name in ("fauxqs", "dynalite")})
    return out


def worker_ms(row: dict) -> float:
    return row.get("cpu", {}).get("total", 0.0)


def emulator_ms(row: dict) -> float:
    return sum(row.get("emulators", {}).values())


def client_ms(row: dict) -> float:
    """The emulators' CPU and the bench's own (it submits and polls like a client, on
    the emulators' CPU): the side that AWS and the caller pay for, not the worker."""
    return emulator_ms(row) + row.get("driver_ms", 0.0)


@dataclass(frozen=True)
class Sides:
    """CPUs of each side (bench.placement): `shared` when the two were not separated."""

    worker: int
    client: int
    shared: bool

    def __str__(self) -> str:
        if self.shared:
            return f"{self.worker} shared cores"
        return f"{self.worker} worker CPU{'s' * (self.worker > 1)}"


def sides(results: dict) -> Sides:
    where = results.get("placement") or {}
    cores = where.get("available_cpus") or results["machine"].get("cores") or 1
    workers, emulators = where.get("workers_cpus"), where.get("emulators_cpus")
    if not workers or not emulators:
        return Sides(cores, cores, True)
    return Sides(len(workers), len(emulators), False)


def ceiling(row: dict, cpus: Sides) -> float | None:
    """jobs/s the CPU spent per job would allow if it were the only limit: with the sides
    on their own CPUs, the lower of the two sides' limits."""
    worker, client = worker_ms(row), client_ms(row)
    if cpus.shared:
        total = worker + client
        return 1000 * cpus.worker / total if total > 0 else None
    limits = [1000 * n / ms for n, ms in ((cpus.worker, worker), (cpus.client, client)) if ms > 0]
    return min(limits) if limits else None


def busy(row: dict) -> dict[str, float]:
    """CPUs each side kept busy over the window (CPU ms per job x jobs/s)."""
    rate = row["jobs_per_s"] / 1000
    return {"worker": worker_ms(row) * rate, "client": client_ms(row) * rate}


def _breakdown(row: dict, emulators: bool = True) -> str:
    p = parts(row)
    text = f"worker {worker_ms(row):.2f} ms/job = " + " + ".join(
        f"{PART_NAMES[k]} {p[k]:.2f}" for k in WORKER_PARTS
    )
    if emulators:
        text += (
            f"; emulators {emulator_ms(row):.2f} = fauxqs {p['fauxqs']:.2f} + "
            f"dynalite {p['dynalite']:.2f}"
        )
    return text


def _largest_difference(row: dict, base: dict, keys: tuple[str, ...] = tuple(PART_NAMES)) -> str:
    mine, theirs = parts(row), parts(base)
    name, extra = max(((k, mine[k] - theirs[k]) for k in keys), key=lambda kv: kv[1])
    if extra <= 0:
        return "no part costs more than the baseline's"
    return f"the largest difference is {PART_NAMES[name]} (+{extra:.2f} ms/job)"


PROFILED = {
    "main_thread": "the main thread",
    "children": "the pool children",
    "threads": "the main process's other threads (SQS I/O, timers)",
}


def _packages(summary: dict, n: int) -> str:
    return ", ".join(
        f"{p['package']} {p['share']:.0%}" for p in summary["by_package"][:n] if p["share"] >= 0.005
    )


def _profile_summary(results: dict, n: int = 3) -> str:
    prof = results.get("profile") or {}
    said = [
        f"{PROFILED[k]}: {_packages(prof[k], n)}"
        for k in ("main_thread", "children")
        if prof.get(k)
    ]
    return f" CPU by package (cProfile, section 2b), {'; '.join(said)}." if said else ""


# --- goals -----------------------------------------------------------------------------
def _goal(
    goal: str,
    target: str,
    measured: float | None,
    limit: float | None,
    at_most: bool,
    why: str = "",
    shown: str | None = None,
) -> dict:
    """One goal: met if `measured` is on the right side of `limit`; None if unmeasured."""
    if measured is None or limit is None:
        return {
            "kind": "ours",
            "goal": goal,
            "target": target,
            "measured": "not measured",
            "value": None,
            "limit": None,
            "met": None,
            "margin": "-",
            "why": "its scenario or baseline was not part of this run",
        }
    met = measured <= limit if at_most else measured >= limit
    gap = abs(measured - limit) / limit if limit else 0.0
    if at_most:
        margin = f"{gap:.0%} under" if met else f"{gap:.0%} over"
    else:
        margin = f"{gap:.0%} above" if met else f"{gap:.0%} short"
    return {
        "kind": "ours",
        "goal": goal,
        "target": target,
        "measured": shown if shown is not None else f"{measured:.3g}",
        "value": measured,
        "limit": limit,
        "met": met,
        "margin": margin,
        "why": "" if met else why,
    }


def _row(rows: list[dict], **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def goals(results: dict) -> list[dict]:
    """Every goal for `ours` with its defaults, with the measured value and the margin;
    where one is missed, `why` says where the difference is, from the CPU breakdown."""
    calls = results.get("calls", [])
    cores = sides(results)
    ours, floor = (_row(calls, kind=k, job="noop") for k in ("ours", "floor"))
    checks = []

    sqs = ours and ours["sqs_total"]
    checks.append(
        _goal(
            "SQS requests per no-op job on a backlog",
            f"<= {SQS_PER_JOB}",
            sqs,
            SQS_PER_JOB if ours else None,
            at_most=True,
            why=_sqs_why(ours) if ours else "",
        )
    )

    ratio = worker_ms(ours) / worker_ms(floor) if ours and floor and worker_ms(floor) else None
    why = ""
    if ratio is not None:
        why = (
            f"ours: {_breakdown(ours, emulators=False)}; floor: "
            f"{worker_ms(floor):.2f} ms/job in one thread; "
            f"{_largest_difference(ours, floor, WORKER_PARTS)}. DynamoDB writes per job: "
            f"ours {ours['ddb_writes']:.3g}, floor {floor['ddb_writes']:.3g}; SQS requests "
            f"per job: ours {ours['sqs_total']:.2f}, floor {floor['sqs_total']:.2f}."
            + _profile_summary(results)
            + pools_report.lease_cost(results.get("pools", []))
            + _without_lease(ours, floor, results)
        )
    checks.append(
        _goal(
            "worker CPU per no-op job vs the floor's",
            f"<= {CPU_VS_FLOOR:g}x",
            ratio,
            CPU_VS_FLOOR if ratio is not None else None,
            at_most=True,
            why=why,
            shown=f"{ratio:.2f}x" if ratio is not None else None,
        )
    )

    # Timed figures: the median of the ratios taken run by run (summaries()).
    tp = results.get("throughput_summary") or summaries(results).get("throughput_summary", [])
    counts = sorted({r["processes"] for r in tp}) or [1, 2, 4]
    for n in counts:
        mine, base = _row(tp, kind="ours", processes=n), _row(tp, kind="stock", processes=n)
        ratio = mine and mine.get("vs_stock")
        value = ratio["median"] if ratio and base else None
        checks.append(
            _goal(
                f"throughput at {n} process{'es' if n > 1 else ''} vs stock Celery's",
                ">= 1.00x",
                value,
                THROUGHPUT_VS_STOCK if value is not None else None,
                at_most=False,
                why=_throughput_why(mine, base, "stock", cores, ours),
                shown=None
                if value is None
                else f"{stats.fmt(ratio, '.2f', 'x')}; {_jobs_per_s(mine, base)}" + _noted(mine),
            )
        )
    mine = _row(tp, kind="ours", processes=FLOOR_PROCESSES)
    base = _row(tp, kind="floor", processes=FLOOR_PROCESSES)
    ratio = mine and mine.get("vs_floor")
    value = ratio["median"] if ratio and base else None
    checks.append(
        _goal(
            f"throughput at {FLOOR_PROCESSES} processes vs the floor's",
            f">= {THROUGHPUT_VS_FLOOR:.0%}",
            value,
            THROUGHPUT_VS_FLOOR if value is not None else None,
            at_most=False,
            why=_throughput_why(mine, base, "floor", cores, ours)
            + pools_report.lease_cost(results.get("pools", [])),
            shown=None
            if value is None
            else f"{stats.fmt(ratio, '.0%')}; {_jobs_per_s(mine, base)}",
        )
    )

    lat = results.get("latency_summary") or summaries(results).get("latency_summary", [])
    mine, base = _row(lat, kind="ours", via="delay()"), _row(lat, kind="stock", via="delay()")
    ratio = mine and mine.get("vs_stock")
    have = bool(ratio and base)
    checks.append(
        _goal(
            "p50 submit to SUCCESS visible (delay()) vs stock Celery's",
            "<= stock's",
            ratio["median"] if have else None,
            1.0 if have else None,
            at_most=True,
            why=_latency_why(mine, base) + _latency_without_lease(results, lat, base)
            if have
            else "",
            shown=f"{stats.fmt(ratio, '.2f', 'x')}; {mine['p50_ms']:.1f} vs "
            f"{base['p50_ms']:.1f} ms (medians)" + _noted(mine)
            if have
            else None,
        )
    )
    return checks


def _without_lease(ours: dict, floor: dict, results: dict) -> str:
    """Ours's worker CPU less the lease's cost (section 6), against the floor's (section 2):
    two scenarios' figures, so an estimate, and said so."""
    lease = pools_report.lease_figures(results.get("pools", []))
    if lease is None or not worker_ms(floor):
        return ""
    ratio = (worker_ms(ours) - lease["cpu_ms"]) / worker_ms(floor)
    return (
        f" Less that cost, ours would spend about {ratio:.2f}x the floor's CPU (section 2's "
        "figures less section 6's difference: an estimate across two scenarios)."
    )


def _latency_without_lease(results: dict, lat: list[dict], base: dict) -> str:
    """Scenario 5's series without the run lease against stock's, run by run."""
    bare = _row(lat, kind="ours", via=workers.WITHOUT_LEASE)
    if bare is None:
        return ""
    rows = results.get("latency", [])
    stock = {r["run"]: r["p50_ms"] for r in rows if r["kind"] == "stock" and r["via"] == "delay()"}
    ratios = [
        r["p50_ms"] / stock[r["run"]]
        for r in rows
        if r.get("via") == workers.WITHOUT_LEASE and r["run"] in stock and stock[r["run"]]
    ]
    spread = stats.spread(ratios) if ratios else None
    return (
        f" The run lease (the STARTED write on the job's path): ours without it (scenario 5, "
        f"measurement only) has a p50 of {bare['p50_ms']:.1f} ms, "
        f"{stats.fmt(spread, '.2f', 'x')} stock's run by run."
    )


def _jobs_per_s(mine: dict, base: dict) -> str:
    return f"{mine['jobs_per_s']:.0f} vs {base['jobs_per_s']:.0f} jobs/s (medians)"


def _noted(row: dict) -> str:
    return f"; NOTE: {row['note']}" if row.get("note") else ""


# --- repeated runs ---------------------------------------------------------------------
# Figures of a latency run worth a median besides the p50 (None where not measured).
LATENCY_MEDIANS = (
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "p50_to_started_ms",
    "p50_started_to_success_ms",
    "started_seen",
)
# A split over fewer of a kind's jobs than this share is over its slowest jobs only: the
# 2 ms poll sees STARTED only where STARTED to SUCCESS outlasts a poll (2026-12-06: stock
# 12..72 of 200, ours 130..168), so the two kinds' splits are not comparable.
SPLIT_MIN_SEEN = 0.5


def summaries(results: dict) -> dict:
    """Per kind and group, the median run of each timed scenario with the spread over
    runs, the ratios to stock and to the floor taken run by run, and a note where the
    spread is wider than the difference between ours and stock (bench.stats)."""
    out = {}
    tp = [
        {**r, **{f"{k}_cores_busy": v for k, v in busy(r).items()}}
        for r in results.get("throughput", [])
    ]
    if tp:
        out["throughput_summary"] = _summarize(
            tp, "jobs_per_s", "processes", ("worker_cores_busy", "client_cores_busy")
        )
    lat = [r for r in results.get("latency", []) if "p50_ms" in r]
    if lat:
        out["latency_summary"] = _summarize(lat, "p50_ms", "via", LATENCY_MEDIANS)
    return out


def _summarize(rows: list[dict], key: str, group: str, medians: tuple[str, ...]) -> list[dict]:
    groups: dict = {}
    for row in rows:
        groups.setdefault((row[group], row["kind"]), []).append(row)
    out = []
    for (value, kind), mine in groups.items():
        peers = [r for r in rows if r[group] == value]
        summary = {
            **stats.median_row(mine, key),
            key: stats.spread(r[key] for r in mine)["median"],
            "spread": stats.spread(r[key] for r in mine),
            "runs": len(mine),
        }
        summary.pop("run", None)
        for name in medians:
            values = [r[name] for r in mine if r.get(name) is not None]
            summary[name] = stats.spread(values)["median"] if values else None
        for base in ("stock", "floor"):
            if kind != base:
                summary[f"vs_{base}"] = stats.paired_ratios(peers, key, kind, base)
        stock = groups.get((value, "stock"))
        if kind == "ours" and stock:
            note = stats.spread_note(summary["spread"], stats.spread(r[key] for r in stock))
            ratio = summary.get("vs_stock")
            if note and ratio and ratio["n"] > 1:
                side = "straddle" if ratio["min"] < 1 < ratio["max"] else "all lie on one side of"
                note += f"; the run-by-run ratios ({stats.fmt(ratio, '.2f', 'x')}) {side} 1.00x"
            summary["note"] = note
        out.append(summary)
    return out


# Jobs one call of each batched action can carry (SQS's limit per call).
BATCHED = {"ReceiveMessage": 10, "DeleteMessageBatch": 10, "ChangeMessageVisibilityBatch": 10}


def _sqs_why(row: dict) -> str:
    """Each action's calls per job, with what one call carried on average."""
    out = []
    for action, per_job in sorted(row["sqs"].items(), key=lambda kv: -kv[1]):
        carried = (
            f" ({1 / per_job:.1f} messages a call, {BATCHED[action]} at most)"
            if action in BATCHED and per_job
            else ""
        )
        out.append(f"{action} {per_job:.2f}{carried}")
    ideal = sum(1 / n for n in (BATCHED["ReceiveMessage"], BATCHED["DeleteMessageBatch"]))
    return (
        f"per job: {', '.join(out)}; full batches of receives and deletes alone would "
        f"make {ideal:.2f}"
    )


def _throughput_why(
    mine: dict | None, base: dict | None, name: str, cores: Sides, calls: dict | None = None
) -> str:
    if not (mine and base):
        return ""
    allowed = ceiling(mine, cores)
    spent = worker_ms(mine) + emulator_ms(mine)
    load = busy(mine)
    text = (
        f"per job, ours spent {spent:.2f} ms of CPU ({_breakdown(mine)}); {name} "
        f"{worker_ms(base) + emulator_ms(base):.2f} ({_breakdown(base)}). The worker side "
        f"kept {load['worker']:.2f} CPUs busy, the emulators and the bench "
        f"{load['client']:.2f}. "
    )
    if allowed and mine["jobs_per_s"] >= 0.75 * allowed:
        return text + (
            f"On {cores} that CPU allows at most {allowed:.0f} jobs/s and ours "
            f"ran at {mine['jobs_per_s']:.0f}: CPU-bound; "
            f"{_largest_difference(mine, base)}."
        )
    rate, p = mine["jobs_per_s"], parts(mine)
    busy_children = p["children"] * rate / (1000 * mine["processes"])
    busy_main = p["main_thread"] * rate / 1000
    waited = (mine.get("run_queue_ms") or {}).get("children")
    text += (
        f"That CPU would allow {allowed or 0:.0f} jobs/s on {cores}, but ours ran at "
        f"{rate:.0f}. Each pool process computed {busy_children:.0%} of "
        f"the time and the main thread {busy_main:.0%}"
    )
    if waited is not None and waited >= p["children"]:
        text += (
            f", but the pool processes waited {waited:.2f} ms per job for a CPU (run queue, "
            f"schedstat) against {p['children']:.2f} computing: a job's time in the pool is "
            "mostly waiting its turn on the worker's CPU (shared with the main thread, the "
            "other pool processes and anything else on it, at a lower priority: "
            "WORKER_POOL_NICE), not the CPU it needs"
        )
    else:
        text += (
            ": not CPU-bound, so jobs wait between them (receiving, prefetch, the hand-off "
            "to the pool) rather than for CPU"
        )
    receives = calls and calls["sqs"].get("ReceiveMessage")
    if receives:
        text += f"; with a backlog (scenario 1) a receive brought {1 / receives:.1f} messages"
    return text + "."


def _latency_why(mine: dict, base: dict) -> str:
    def part(row: dict, key: str) -> str:
        v = row.get(key)
        return f"{v:.1f}" if v is not None else "not seen"

    text = (
        f"+{mine['p50_ms'] - base['p50_ms']:.1f} ms at p50. Submit to STARTED (receive and "
        f"dispatch): ours {part(mine, 'p50_to_started_ms')} vs stock "
        f"{part(base, 'p50_to_started_ms')} ms; STARTED to SUCCESS (run and record): ours "
        f"{part(mine, 'p50_started_to_success_ms')} vs stock "
        f"{part(base, 'p50_started_to_success_ms')} ms"
    )
    a, b = mine.get("p50_to_started_ms"), base.get("p50_to_started_ms")
    c, d = mine.get("p50_started_to_success_ms"), base.get("p50_started_to_success_ms")
    thin = [
        f"{name} saw STARTED in {_seen(row)} jobs"
        for name, row in (("ours", mine), ("stock", base))
        if _seen_share(row) is not None and _seen_share(row) < SPLIT_MIN_SEEN
    ]
    if thin:
        text += (
            f"; but {' and '.join(thin)}: the split is over the jobs whose STARTED "
            "outlasted a poll, the slowest, so it does not compare the two kinds"
        )
    elif None not in (a, b, c, d):
        text += ": the difference is mostly in " + (
            "receiving and dispatching" if a - b >= c - d else "running and recording"
        )
    return text + "."


def _waited(row: dict) -> str:
    waited = row.get("run_queue_ms")
    return "-" if not waited else f"{waited['main']:.2f} / {waited['children']:.2f}"


def _latency_split(rows: list[dict]) -> list[str]:
    """Section 5b: ours's p50 by part of a job's path (bench.waits.latency_split), with its
    run lease and, where scenario 5 ran it, without."""
    series = {
        via: [r.get("split") for r in rows if r.get("kind") == "ours" and r.get("via") == via]
        for via in ("delay()", workers.WITHOUT_LEASE)
    }
    series = {via: [s for s in splits if s] for via, splits in series.items()}
    series = {via: splits for via, splits in series.items() if splits}
    if not series:
        return []
    table = []
    for name, _, _ in waits.LATENCY_PARTS:
        cells = []
        for splits in series.values():
            values = [s[name] for s in splits if s.get(name) is not None]
            cells.append(stats.fmt(stats.spread(values)) if values else "-")
        table.append([name, *cells])
    first = next(iter(series.values()))
    return [
        "",
        "### 5b. Where ours's p50 goes: the worker's own timestamps (JOBS_WAIT_TRACE) and the "
        "bench's clock, per job",
        "",
        f"The median (min..max) over {len(first)} series of each part's p50, ms, over the jobs "
        f"the trace has whole ({', '.join(str(s['n']) for s in first)} a series); the parts' "
        "p50s need not add up to the p50. Stock has no such timestamps.",
        "",
        _table(["part", *(f"ours, {via}" for via in series)], table),
    ]


def _seen_share(row: dict) -> float | None:
    seen, n = row.get("started_seen"), row.get("n")
    return seen / n if seen is not None and n else None


def _seen(row: dict) -> str:
    seen = row.get("started_seen")
    return "-" if seen is None or not row.get("n") else f"{seen:.0f} of {row['n']}"


# --- the report ------------------------------------------------------------------------
def _placement(results: dict) -> str:
    return (results.get("placement") or {}).get("note") or "not recorded"


def write_units(row: dict) -> tuple[int, int]:
    """DynamoDB write units per job: the table's (counted at the proxy, by item size) and
    the listing index's (bench/prices.py INDEX_WRU_PER_JOB: requests cannot show them)."""
    table = row["ddb_writes"] * prices.wru(row["item_bytes"])
    return round(table, 3), prices.INDEX_WRU_PER_JOB.get(row["kind"], 0)


def _headline(results: dict) -> str:
    """The figures issue 19 tracks, one column per kind, ours against stock last."""
    kinds = ("stock", "ours", "floor")
    calls = {r["kind"]: r for r in results.get("calls", []) if r["job"] == "noop"}
    dollars = {c["kind"]: c["total"] for c in costs(results.get("calls", []))}
    rows: list[list] = []

    def plain(name: str, values: dict, digits: str = ".3g") -> None:
        cells = [format(values[k], digits) if k in values else "-" for k in kinds]
        mine, base = values.get("ours"), values.get("stock")
        rows.append([name, *cells, _ratio(mine, base)])

    if calls:
        plain("SQS requests", {k: r["sqs_total"] for k, r in calls.items()})
        units = {k: write_units(r) for k, r in calls.items()}
        rows.append(
            [
                "DynamoDB write units (table + listing index)",
                *(f"{units[k][0]:.3g} + {units[k][1]}" if k in units else "-" for k in kinds),
                _ratio(
                    units["ours"][0] + units["ours"][1] if "ours" in units else None,
                    units["stock"][0] + units["stock"][1] if "stock" in units else None,
                ),
            ]
        )
        plain("worker CPU, ms (section 2, one run)", {k: worker_ms(r) for k, r in calls.items()})
        plain("$ per million jobs", dollars, ".2f")
    for r in sorted({r["processes"] for r in results.get("throughput_summary", [])}):
        by_kind = {x["kind"]: x for x in results["throughput_summary"] if x["processes"] == r}
        rows.append(
            [
                f"jobs/s at {r} process{'es' if r > 1 else ''}",
                *(stats.fmt(by_kind[k]["spread"]) if k in by_kind else "-" for k in kinds),
                stats.fmt(by_kind.get("ours", {}).get("vs_stock"), ".2f", "x"),
            ]
        )
    lat = {
        r["kind"]: r
        for r in results.get("latency_summary", [])
        if r["via"] in ("delay()", "sqs send (boto3)")
    }
    if lat:
        rows.append(
            [
                "p50 submit to SUCCESS, ms (`delay()`; floor: boto3 send)",
                *(stats.fmt(lat[k]["spread"]) if k in lat else "-" for k in kinds),
                stats.fmt(lat.get("ours", {}).get("vs_stock"), ".2f", "x"),
            ]
        )
    if not rows:
        return ""
    return _table(["per no-op job", *kinds, "ours / stock"], rows)


def markdown(results: dict) -> str:
    m = results["machine"]
    cores = sides(results)
    parts_md = [
        f"# Benchmarks ({m['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, celery {m['celery']}, "
        f"kombu {m['kombu']}, boto3 {m['boto3']}, node {m['node']}; emulators fauxqs "
        f"{m.get('fauxqs', '?')} (SQS) and dynalite {m.get('dynalite', '?')} (DynamoDB). "
        f"Settings: {results['settings']}.",
        "",
        "Kinds: **stock** = Celery with its `dynamodb://` backend and task_track_started; "
        "**ours** = `celery -A tasks worker` with its defaults (receive batching adapts by "
        "itself; batched deletes and visibility extensions); **floor** = a boto3 loop "
        "(receive 10, one write per job, batch delete).",
        "",
        f"CPU placement: {_placement(results)}. Timed figures (throughput, latency): the "
        f"median of {results.get('settings', {}).get('runs', 1)} run(s), the kinds "
        "alternating, with (min..max); ratios taken run by run, then their median.",
    ]
    headline = _headline(results)
    if headline:
        parts_md += ["", "## Summary (per no-op job)", "", headline]
    calls = results.get("calls", [])
    if calls:
        parts_md += [
            "",
            "## 1. AWS requests per job (a backlog, counted at a proxy)",
            "",
            _table(
                [
                    "kind",
                    "job",
                    "jobs",
                    "SQS/job",
                    "DynamoDB writes/job",
                    "DynamoDB reads/job",
                    "SQS by action",
                    "DynamoDB by action",
                    "item bytes",
                ],
                [
                    [
                        r["kind"],
                        r["job"],
                        r["jobs"],
                        r["sqs_total"],
                        r["ddb_writes"],
                        r["ddb_reads"],
                        _actions(r["sqs"]),
                        _actions(r["dynamodb"]),
                        r["item_bytes"],
                    ]
                    for r in calls
                ],
            ),
        ]
        floor = _row(calls, kind="floor", job="noop")
        stock = _row(calls, kind="stock", job="noop")
        rows = []
        for r in calls:
            p = parts(r)
            noop = r["job"] == "noop"
            rows.append(
                [
                    r["kind"],
                    r["job"],
                    worker_ms(r),
                    _ratio(worker_ms(r), floor and worker_ms(floor)) if noop else "-",
                    _ratio(worker_ms(r), stock and worker_ms(stock)) if noop else "-",
                    p["main_thread"],
                    p["main_other_threads"],
                    p["children"],
                    p["fauxqs"],
                    p["dynalite"],
                    worker_ms(r) + emulator_ms(r),
                    r["seconds"],
                ]
            )
        parts_md += [
            "",
            "## 2. Worker CPU per job, and where it goes (ms of user+sys CPU per "
            "job = s per 1,000 jobs; 2 pool processes)",
            "",
            "Main thread = Celery's event loop (consumer, transport, hand-off to the "
            "pool); other threads = the main process's I/O threads (our SQS I/O "
            "component's deletes and visibility calls); pool children run the job "
            "and write its record. The floor is one thread per process.",
            "",
            _table(
                [
                    "kind",
                    "job",
                    "worker",
                    "vs floor",
                    "vs stock",
                    "main thread",
                    "other threads",
                    "pool children",
                    "fauxqs",
                    "dynalite",
                    "worker + emulators",
                    "drain s (via proxy)",
                ],
                rows,
            ),
        ]
    prof = results.get("profile")
    if prof:
        parts_md += [
            "",
            f"### 2b. ours under cProfile: where the main thread, the pool "
            f"children and the other threads spend their CPU ({prof['jobs']} no-op jobs, "
            f"a thread CPU clock; the profiler inflates code that makes many small Python "
            f"calls most, so read shares, not times)",
        ]
        for key, title in PROFILED.items():
            summary = prof.get(key)
            if not summary:
                continue
            parts_md += [
                "",
                f"{title[0].upper()}{title[1:]}, {summary['ms_per_job']:.2f} ms/job while "
                f"profiled, by package: {_packages(summary, 8)}.",
                "",
                _table(
                    ["function (own time)", "calls/job", "own ms/job", "cum ms/job"],
                    [
                        [
                            f"`{t['function']}`",
                            t["calls_per_job"],
                            t["own_ms_per_job"],
                            t["cum_ms_per_job"],
                        ]
                        for t in summary["top"]
                    ],
                ),
            ]
    if calls:
        parts_md += [
            "",
            f"## 3. Cost per million no-op jobs (AWS list prices of "
            f"{prices.PRICES_DATE}, incl. 1 SendMessage to submit)",
            "",
            _table(
                [
                    "kind",
                    "SQS $",
                    "DynamoDB writes $",
                    "DynamoDB reads $",
                    "Fargate vCPU $",
                    "total $",
                    "+ API Gateway $ if via HTTP",
                ],
                [
                    [
                        c["kind"],
                        c["sqs"],
                        c["ddb_writes"],
                        c["ddb_reads"],
                        c["fargate_cpu"],
                        c["total"],
                        c["api_gateway_if_http"],
                    ]
                    for c in costs(calls)
                ],
            ),
            "",
            "### 3b. A job waiting for its ETA (computed from the code's request counts)",
            "",
            waiting_cost.markdown_table(),
        ]
    runs = results.get("settings", {}).get("runs", 1)
    tp = results.get("throughput_summary") or summaries(results).get("throughput_summary", [])
    if tp:
        rows, notes = [], []
        for r in tp:
            p, load = parts(r), busy(r)
            if r.get("note"):
                notes.append(f"* ours at {r['processes']} processes (jobs/s): {r['note']}.")
            rows.append(
                [
                    r["kind"],
                    r["processes"],
                    r["jobs"],
                    stats.fmt(r["spread"]),
                    stats.fmt(r.get("vs_stock"), ".2f", "x"),
                    stats.fmt(r.get("vs_floor"), ".0%"),
                    worker_ms(r),
                    p["main_thread"] + p["main_other_threads"],
                    p["children"],
                    p["fauxqs"],
                    p["dynalite"],
                    r.get("driver_ms"),
                    f"{load['worker']:.2f} / {load['client']:.2f}",
                    ceiling(r, cores),
                    _waited(r),
                ]
            )
        parts_md += [
            "",
            "## 4. Throughput: jobs/s draining a pre-filled queue (emulators reached directly)",
            "",
            f"Median of {runs} run(s), the kinds alternating, with (min..max); "
            '"vs stock" and "of floor" are the median (min..max) of the ratios taken run '
            f"by run. {'Worker-bound: ' if not cores.shared else ''}{_placement(results)}. "
            "CPU in ms per job over the measured window of the median run; bench = this "
            'process (submitting, polling); "CPUs busy" = CPUs each side kept busy '
            f'(worker / emulators + bench); "CPU allows" = the rate the CPU spent per job '
            f"allows on {cores}"
            + ("" if cores.shared else " and the emulators' CPU")
            + ", if CPU were the only limit: a kind well below it is waiting, not computing; "
            '"waiting for a CPU" = ms per job the worker\'s threads were runnable but not '
            "running (schedstat's run-queue time; floor: main only), over the same window.",
            "",
            _table(
                [
                    "kind",
                    "processes",
                    "jobs (median run)",
                    "jobs/s",
                    "vs stock",
                    "of floor",
                    "worker CPU",
                    "main process",
                    "pool children",
                    "fauxqs",
                    "dynalite",
                    "bench",
                    "CPUs busy",
                    "CPU allows jobs/s",
                    "waiting for a CPU (main / pool)",
                ],
                rows,
            ),
        ]
        if notes:
            parts_md += ["", "Spread wider than the difference between ours and stock:", ""]
            parts_md += notes
    lat = results.get("latency_summary") or summaries(results).get("latency_summary", [])
    if lat:
        notes = [f"* ours {r['via']} (p50, ms): {r['note']}." for r in lat if r.get("note")]
        parts_md += [
            "",
            "## 5. Latency: submit to SUCCESS visible, one job at a time on an idle stack (ms)",
            "",
            f"Per kind, {runs} series of n jobs, the kinds alternating; p50 = median "
            "(min..max) of the series' p50s, the other columns the median over the series; "
            '"vs stock" = the median (min..max) of the p50 ratios taken series by series.',
            "",
            _table(
                [
                    "kind",
                    "via",
                    "n",
                    "p50",
                    "vs stock",
                    "p95",
                    "p99",
                    "p50 to STARTED",
                    "p50 STARTED to SUCCESS",
                    "STARTED seen",
                    "note",
                ],
                [
                    [
                        r["kind"],
                        r["via"],
                        r.get("n"),
                        stats.fmt(r["spread"]),
                        stats.fmt(r.get("vs_stock"), ".2f", "x"),
                        r.get("p95_ms"),
                        r.get("p99_ms"),
                        r.get("p50_to_started_ms"),
                        r.get("p50_started_to_success_ms"),
                        _seen(r) if r.get("kind") != "floor" else "-",
                        "",
                    ]
                    for r in lat
                ]
                + [
                    [r["kind"], r["via"], "-", "-", "-", "-", "-", "-", "-", "-", r["note"]]
                    for r in results.get("latency", [])
                    if "p50_ms" not in r and r.get("run", 0) == 0
                ],
            ),
        ]
        if notes:
            parts_md += ["", "Spread wider than the difference between ours and stock:", ""]
            parts_md += notes
        parts_md += _latency_split(results.get("latency", []))
    if results.get("pools"):
        parts_md += pools_report.markdown(results["pools"], _table)
    checks = results.get("goals", [])
    if checks:
        met = sum(1 for c in checks if c["met"])
        measured = sum(1 for c in checks if c["met"] is not None)
        parts_md += [
            "",
            f"## Goals (ours with its defaults; {met} of {measured} measured met)",
            "",
            _table(
                ["goal", "target", "measured", "met", "by", "why (if missed)"],
                [
                    [
                        c["goal"],
                        c["target"],
                        c["measured"],
                        {True: "yes", False: "**NO**", None: "n/a"}[c["met"]],
                        c["margin"],
                        c["why"],
                    ]
                    for c in checks
                ],
            ),
        ]
    for name, error in results.get("failed", {}).items():
        parts_md += ["", f"**Scenario {name} failed:** `{error}`"]
    return "\n".join(parts_md) + "\n"
