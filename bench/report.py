"""Machine details, Markdown tables and the goals check of one benchmark run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime

from bench import prices

GOALS = {"sqs_per_job": 0.3, "ddb_writes_per_job": 2, "ddb_reads_per_job": 0,
         "throughput_vs_floor_at_4": 0.70}


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for package in ("celery", "kombu", "boto3", "moto"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        node = "absent"
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "node": node, **versions}


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _actions(calls: dict) -> str:
    return ", ".join(f"{a} {v:.2f}" for a, v in sorted(calls.items())) or "-"


def costs(calls: list[dict]) -> list[dict]:
    out = []
    for row in calls:
        if row["job"] != "noop":
            continue
        out.append({"kind": row["kind"],
                    **prices.cost_per_million(row, consistent_reads=row["kind"] != "stock")})
    return out


def goals(results: dict, kind: str) -> list[dict]:
    """Each goal for `kind` (no-op jobs), with the measured value and the margin."""
    checks = []
    noop = next((r for r in results.get("calls", []) if r["kind"] == kind
                 and r["job"] == "noop"), None)
    stock = next((r for r in results.get("calls", []) if r["kind"] == "stock"
                  and r["job"] == "noop"), None)
    if noop:
        checks += [
            ("SQS requests per job <= 0.3", noop["sqs_total"], noop["sqs_total"] <= 0.3),
            ("DynamoDB writes per job <= 2", noop["ddb_writes"], noop["ddb_writes"] <= 2),
            ("DynamoDB reads per job = 0", noop["ddb_reads"], noop["ddb_reads"] == 0),
        ]
        if stock:
            ratio = noop["cpu_s_per_1000"] / stock["cpu_s_per_1000"]
            checks.append(("worker CPU per job <= stock Celery (ratio)", ratio, ratio <= 1.0))
    tp = {(r["kind"], r["processes"]): r["jobs_per_s"] for r in results.get("throughput", [])}
    if (kind, 4) in tp and ("floor", 4) in tp:
        ratio = tp[(kind, 4)] / tp[("floor", 4)]
        checks.append(("throughput at 4 processes >= 70% of floor", ratio, ratio >= 0.70))
    return [{"kind": kind, "goal": g, "measured": round(v, 3), "met": ok}
            for g, v, ok in checks]


def markdown(results: dict) -> str:
    m = results["machine"]
    parts = [
        f"# Benchmarks ({m['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, celery {m['celery']}, "
        f"kombu {m['kombu']}, boto3 {m['boto3']}, moto {m['moto']}, node {m['node']} "
        f"(fauxqs for SQS, moto server for DynamoDB). Settings: {results['settings']}.",
        "",
        "Kinds: **stock** = Celery with its `dynamodb://` backend and task_track_started; "
        "**ours** = `celery -A tasks worker` as configured (batched deletes); **ours-batched** "
        "= the same with batched receives (JOBS_RECEIVE_BATCH=10) and a prefetch of 20; "
        "**floor** = a boto3 loop (receive 10, one write per job, batch delete).",
    ]
    calls = results.get("calls", [])
    if calls:
        parts += ["", "## 1. AWS requests per job (steady state, counted at a proxy)", "",
                  _table(["kind", "job", "jobs", "SQS/job", "DynamoDB writes/job",
                          "DynamoDB reads/job", "SQS by action", "DynamoDB by action",
                          "item bytes"],
                         [[r["kind"], r["job"], r["jobs"], r["sqs_total"], r["ddb_writes"],
                           r["ddb_reads"], _actions(r["sqs"]), _actions(r["dynamodb"]),
                           r["item_bytes"]] for r in calls])]
        noop = [r for r in calls if r["job"] == "noop"]
        stock = next((r for r in noop if r["kind"] == "stock"), None)
        parts += ["", "## 2. Worker CPU per 1,000 no-op jobs (user+sys, process tree)", "",
                  _table(["kind", "CPU s / 1,000 jobs", "vs stock", "drain s (via proxy)"],
                         [[r["kind"], r["cpu_s_per_1000"],
                           r["cpu_s_per_1000"] / stock["cpu_s_per_1000"] if stock else "-",
                           r["seconds"]] for r in noop])]
        parts += ["", f"## 3. Cost per million no-op jobs (AWS list prices of "
                  f"{prices.PRICES_DATE}, incl. 1 SendMessage to submit)", "",
                  _table(["kind", "SQS $", "DynamoDB writes $", "DynamoDB reads $",
                          "Fargate vCPU $", "total $", "+ API Gateway $ if via HTTP"],
                         [[c["kind"], c["sqs"], c["ddb_writes"], c["ddb_reads"],
                           c["fargate_cpu"], c["total"], c["api_gateway_if_http"]]
                          for c in costs(calls)])]
    tp = results.get("throughput", [])
    if tp:
        floor = {r["processes"]: r["jobs_per_s"] for r in tp if r["kind"] == "floor"}
        parts += ["", "## 4. Throughput: jobs/s draining a pre-filled queue (fauxqs + moto)", "",
                  _table(["kind", "processes", "jobs", "jobs/s", "of floor",
                          "worker CPU ms/job", "emulators CPU ms/job"],
                         [[r["kind"], r["processes"], r["jobs"], r["jobs_per_s"],
                           f"{r['jobs_per_s'] / floor[r['processes']]:.0%}"
                           if floor.get(r["processes"]) else "-",
                           r.get("worker_cpu_ms_per_job", "-"),
                           r.get("emulator_cpu_ms_per_job", "-")] for r in tp])]
    lat = results.get("latency", [])
    if lat:
        parts += ["", "## 5. Latency: submit to SUCCESS visible, idle stack, moto for SQS and "
                  "DynamoDB (ms)", "",
                  _table(["kind", "via", "n", "p50", "p95", "p99", "note"],
                         [[r["kind"], r["via"], r.get("n", "-"), r.get("p50_ms", "-"),
                           r.get("p95_ms", "-"), r.get("p99_ms", "-"), r.get("note", "")]
                          for r in lat])]
    checks = results.get("goals", [])
    if checks:
        parts += ["", "## Goals", "",
                  _table(["kind", "goal", "measured", "met"],
                         [[c["kind"], c["goal"], c["measured"], "yes" if c["met"] else "NO"]
                          for c in checks])]
    for name, error in results.get("failed", {}).items():
        parts += ["", f"**Scenario {name} failed:** `{error}`"]
    return "\n".join(parts) + "\n"
