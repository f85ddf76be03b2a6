"""A tiny run of the benchmarks (`python -m bench --quick`): the report is produced and its
numbers are sane. Not a timed test: it asserts counts that do not depend on speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import OUTPUT, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.mark.skipif(shutil.which("node") is None, reason="fauxqs needs Node.js")
def test_quick_bench_produces_a_sane_report(tmp_path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "JOBS_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--kinds", "ours,floor", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "bench-smoke.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads((out / "latest.json").read_text())
    report = (out / "latest.md").read_text()
    for heading in ("## 1. AWS requests per job", "## 2. Worker CPU", "## 3. Cost per million",
                    "## 4. Throughput", "## 5. Latency", "## Goals"):
        assert heading in report
    assert results["machine"]["cores"] >= 1 and results["machine"]["celery"] != "absent"

    calls = {(r["kind"], r["job"]): r for r in results["calls"]}
    ours, floor = calls[("ours", "noop")], calls[("floor", "noop")]
    # Every job reached SUCCESS, and the request counts are those the design implies.
    assert all(r["status_of_last"] == "SUCCESS" for r in results["calls"])
    assert ours["ddb_writes"] == 2 and ours["ddb_reads"] == 0  # STARTED + SUCCESS, no read
    assert floor["ddb_writes"] == 1 and floor["sqs"].get("DeleteMessageBatch", 0) <= 0.5
    # Each job is deleted once: one DeleteMessage each, or a share of a batch.
    deletes = ours["sqs"].get("DeleteMessage", 0) + ours["sqs"].get("DeleteMessageBatch", 0)
    assert 0 < deletes <= 1 and ours["sqs"]["ReceiveMessage"] > 0
    assert calls[("ours", "progress")]["ddb_writes"] == 7  # STARTED, 5 x PROGRESS, SUCCESS
    assert floor["cpu_s_per_1000"] > 0 and 0 < ours["cpu_s_per_1000"] < 1000
    assert 0 < ours["item_bytes"] < 1024

    assert results["throughput"][0]["jobs_per_s"] > 0
    latency = results["latency"][0]
    assert latency["n"] == 5 and 0 < latency["p50_ms"] <= latency["p99_ms"] < 30_000
