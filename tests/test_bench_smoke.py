"""A tiny run of the benchmarks (`python -m bench --quick`): the report is produced and its
numbers are sane. Not a timed test: it asserts counts that do not depend on speed.

It needs what `make test` installs plus Node.js 20 and npm: the bench installs its
emulators (fauxqs for SQS, dynalite for DynamoDB) with npm on first use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from bench import prices
from tests.conftest import OUTPUT, ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="the bench's emulators need Node.js and npm",
    ),
]

GOALS = (
    "SQS requests per no-op job on a backlog",
    "worker CPU per no-op job vs the floor's",
    "throughput at 1 process vs stock Celery's",
    "throughput at 4 processes vs the floor's",
    "p50 submit to SUCCESS visible (delay()) vs stock Celery's",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str, str]:
    """(results JSON, Markdown report, stderr) of one `python -m bench --quick`."""
    out = tmp_path_factory.mktemp("bench") / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBS_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "bench-smoke.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (
        json.loads((out / "latest.json").read_text()),
        (out / "latest.md").read_text(),
        proc.stderr,
    )


def test_report_has_every_section_and_the_emulators(quick_run):
    results, report, _ = quick_run
    for heading in (
        "## 1. AWS requests per job",
        "## 2. Worker CPU",
        "### 2b. ours",
        "## 3. Cost per million",
        "### 3b. A job waiting for its ETA",
        "## 4. Throughput",
        "## 5. Latency",
        "## 6. Pools",
        "## Goals",
    ):
        assert heading in report
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["celery"] != "absent"
    # DynamoDB is dynalite, never moto's server (whose conditional writes were the limit).
    assert machine["dynalite"] != "absent" and machine["fauxqs"] != "absent"
    assert "moto" not in machine
    assert not results.get("failed")


def test_request_counts_are_those_the_design_implies(quick_run):
    results, _, _ = quick_run
    calls = {(r["kind"], r["job"]): r for r in results["calls"]}
    assert {kind for kind, _ in calls} == {"stock", "ours", "floor"}  # no ours-batched
    ours, floor, stock = (calls[(k, "noop")] for k in ("ours", "floor", "stock"))
    # Every job reached SUCCESS, stock's records included (its backend on dynalite).
    assert all(r["status_of_last"] == "SUCCESS" for r in results["calls"])
    assert ours["ddb_writes"] == 2 and ours["ddb_reads"] == 0  # STARTED + SUCCESS, no read
    assert floor["ddb_writes"] == 1 and floor["sqs"].get("DeleteMessageBatch", 0) <= 0.5
    assert stock["ddb_writes"] == 2  # Celery's backend: PutItem STARTED, PutItem SUCCESS
    # ours acknowledges with DeleteMessageBatch only: never one DeleteMessage per job.
    assert "DeleteMessage" not in ours["sqs"]
    assert 0 < ours["sqs"]["DeleteMessageBatch"] <= 1 and ours["sqs"]["ReceiveMessage"] > 0
    assert calls[("ours", "progress")]["ddb_writes"] == 7  # STARTED, 5 x PROGRESS, SUCCESS
    assert 0 < ours["item_bytes"] < 1024


def test_cpu_is_split_into_its_parts(quick_run):
    results, _, _ = quick_run
    for row in results["calls"] + results["throughput"]:
        cpu = row["cpu"]
        parts = cpu["main_thread"] + cpu["main_other_threads"] + cpu["children"]
        assert cpu["total"] == pytest.approx(parts)
        assert all(v >= -1e-9 for v in cpu.values()), row
        assert set(row["emulators"]) == {"fauxqs", "dynalite"}
    calls = {(r["kind"], r["job"]): r for r in results["calls"]}
    ours, floor = calls[("ours", "noop")], calls[("floor", "noop")]
    assert ours["cpu"]["children"] > 0  # the prefork pool runs the jobs
    assert floor["cpu"]["children"] == 0 and floor["cpu"]["total"] > 0  # one loop, no pool
    assert 0 < ours["cpu_s_per_1000"] < 1000
    # Every ours job writes its record twice: dynalite did work in the window.
    assert ours["emulators"]["dynalite"] > 0

    profile = results["profile"]
    assert profile["jobs"] > 0
    for part in ("main_thread", "children"):  # each pool child wrote its profile at exit
        summary = profile[part]
        assert summary["ms_per_job"] > 0 and 0 < len(summary["top"]) <= 10
        assert sum(p["share"] for p in summary["by_package"]) == pytest.approx(1)


def test_goals_are_all_printed_with_met_or_not(quick_run):
    results, report, _ = quick_run
    goals = {g["goal"]: g for g in results["goals"]}
    assert tuple(goals) == GOALS
    for name in GOALS:
        assert name in report
    for name in GOALS[:2]:  # measured in every run; the others need a bigger one
        assert goals[name]["met"] in (True, False) and goals[name]["margin"] != "-"
        assert goals[name]["met"] or goals[name]["why"]  # a missed goal says why

    assert results["throughput"][0]["jobs_per_s"] > 0
    latency = results["latency"][0]
    assert latency["n"] == 5 and 0 < latency["p50_ms"] <= latency["p99_ms"] < 30_000


def test_timed_figures_are_summarized_with_paired_ratios(quick_run):
    results, report, _ = quick_run
    assert results["settings"]["runs"] == 1  # --quick: one short run of everything
    # Each worker kind ran once per process count, stock first, so ours pairs with it.
    assert [r["kind"] for r in results["throughput"]] == ["stock", "ours", "floor"]
    tp = {r["kind"]: r for r in results["throughput_summary"]}
    assert tp["ours"]["vs_stock"]["n"] == 1 and tp["ours"]["vs_floor"]["median"] > 0
    lat = {(r["kind"], r["via"]): r for r in results["latency_summary"]}
    assert lat[("ours", "delay()")]["vs_stock"]["median"] > 0
    assert "## Summary (per no-op job)" in report
    index = prices.INDEX_WRU_PER_JOB["ours"]  # not counted at the proxy: DynamoDB's own
    assert f"DynamoDB write units (table + listing index) | 2 + 0 | 2 + {index} | 1 + 0" in report
    where = results["placement"]
    if where["available_cpus"] >= 2:  # emulators and workers apart
        assert where["emulators_cpus"] and where["workers_cpus"]
        assert not set(where["emulators_cpus"]) & set(where["workers_cpus"])
    assert f"CPU placement: {where['note']}" in report
