"""Real worker processes on moto's server; jobs submitted with delay() from this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from celery import chain, chord, group, states

from tasks.debug import add, fail, sleep
from tasks.text import analyze
from tests.conftest import OUTPUT, ROOT, wait_until
from tests.jobs import flaky, increment, total

pytestmark = pytest.mark.integration


def test_success_is_recorded_with_readable_attributes(stack, module_worker):
    result = analyze.delay(text="One sentence here. And another one there!", top_k=2)
    value = result.get(timeout=60)
    assert value["sentences"] == 2 and len(value["keywords"]) == 2
    item = stack.item(result.id)
    assert item["status"]["S"] == states.SUCCESS
    assert item["task"]["S"] == "tasks.text.analyze"
    assert item["attempts"]["N"] == "1"
    assert item["worker"]["S"] == module_worker.name
    assert item["started_at"]["S"] <= item["finished_at"]["S"]
    assert "One sentence here" in item["kwargs"]["S"]


def test_failure_carries_the_error_and_traceback(stack, module_worker):
    result = fail.delay(message="the input was bad")
    with pytest.raises(RuntimeError, match="the input was bad"):
        result.get(timeout=60)
    assert result.status == states.FAILURE
    assert "raise RuntimeError(message)" in result.traceback
    error = stack.item(result.id)["error"]["M"]
    # The job's own message is not public (it may quote arguments): kept for Python in `args`.
    assert (error["type"]["S"], error["message"]["S"]) == ("RuntimeError", "")
    assert json.loads(error["args"]["S"]) == ["the input was bad"]


def test_invalid_arguments_fail_with_a_clear_error(module_worker):
    result = analyze.delay(text="hi", top_k="many")
    with pytest.raises(Exception, match="top_k: is not of type 'integer'") as info:
        result.get(timeout=60)
    assert type(info.value).__name__ == "InvalidJobInput"


def test_retry_then_success(stack, module_worker):
    result = flaky.delay(fail_times=2)
    assert result.get(timeout=60) == 2
    assert stack.item(result.id)["retries"]["N"] == "2"


def test_progress_is_visible_while_the_job_runs(module_worker):
    result = sleep.delay(seconds=4, steps=8)
    seen = wait_until(
        lambda: result.state == "PROGRESS" and result.info, 30, message="PROGRESS state"
    )
    assert seen["total"] == 8 and 1 <= seen["current"] <= 8
    assert seen["message"].startswith("step ")
    assert result.get(timeout=60) == {"slept": 4, "steps": 8}


def test_group(module_worker):
    result = group(add.s(x=i, y=i) for i in range(6))()
    assert result.get(timeout=60) == [0, 2, 4, 6, 8, 10]


def test_chain(module_worker):
    result = chain(add.s(x=1, y=2), increment.s(), increment.s(by=10))()
    assert result.get(timeout=60) == 14


def test_chord_fires_its_body_once_with_all_results(stack, module_worker):
    result = chord(add.s(x=i, y=1) for i in range(5))(total.s())
    assert result.get(timeout=90) == 15
    group_id = result.parent.id
    item = stack.dynamodb.get_item(
        TableName=stack.table, Key={"job_id": {"S": f"chord:{group_id}"}}, ConsistentRead=True
    )["Item"]
    assert item["done"] == {"N": "5"} and "chord_fired_at" in item


def test_a_result_too_large_for_dynamodb_is_kept_in_s3(stack, module_worker):
    """Over the item limit: the record keeps a reference (tests/test_large_objects.py)."""
    from tests.jobs import big_result

    result = big_result.delay(size=500_000)
    assert result.get(timeout=60) == "x" * 500_000
    assert "result" not in stack.item(result.id) and "result_ref" in stack.item(result.id)
    wait_until(lambda: stack.queue_counts() == (0, 0), 30, message="queue drained")


def test_health_check_reads_the_heartbeat_file(stack, module_worker, tmp_path):
    heartbeat = OUTPUT / f"heartbeat-{module_worker.name}"
    wait_until(heartbeat.exists, 30, message="heartbeat file")

    def health(path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tasks.worker.health"],
            cwd=ROOT,
            env={**stack.env, "WORKER_HEARTBEAT_FILE": str(path)},
            capture_output=True,
            text=True,
            timeout=30,
        )

    alive = health(heartbeat)
    assert alive.returncode == 0 and alive.stdout.startswith("healthy"), alive.stdout
    stale = tmp_path / "stale"
    stale.touch()
    os.utime(stale, (0, 0))
    assert health(stale).returncode == 1
    missing = health(tmp_path / "missing")
    assert missing.returncode == 1 and "no heartbeat file" in missing.stdout
