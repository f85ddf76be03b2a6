"""`make run`: starts everything, refuses a second copy, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import ROOT, _port_open, free_port, wait_until

pytestmark = pytest.mark.integration


def test_run_local_serves_jobs_refuses_a_second_copy_and_stops_cleanly(tmp_path):
    aws_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBS_"))}
    env.update(
        LOCAL_AWS_PORT=str(aws_port),
        LOCAL_API_PORT=str(api_port),
        LOCAL_RUN_DIR=str(tmp_path),
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws_port}",
    )
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "ready:" in log.read_text() or proc.poll() is not None,
            120,
            message="make run ready",
        )
        assert proc.poll() is None, log.read_text()[-3000:]

        second = subprocess.run(
            [sys.executable, "scripts/run_local.py"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr

        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/tasks/tasks.debug.add",
            data=json.dumps({"x": 2, "y": 40}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            job_id = json.load(response)["job_id"]

        def finished():
            url = f"http://127.0.0.1:{api_port}/jobs/{job_id}"
            with urllib.request.urlopen(url, timeout=30) as response:
                record = json.load(response)
            return record if record["status"] == "SUCCESS" else None

        assert wait_until(finished, 60, interval=0.5, message="job SUCCESS")["result"] == 42
        # The console carries the stack's own lines, not the emulator's request log
        # (a line per long poll) nor its red 400s for provisioning's existence checks.
        console = log.read_text()
        emulator = [line for line in console.splitlines() if line.startswith("[aws")]
        assert not [line for line in emulator if "HTTP/1.1" in line], emulator
        assert "[worker]" in console and "ready." in console
        # the local scheduler runs with the rest, with the demo schedule (tasks.demo_schedules)
        assert "schedule tasks.demo_schedules.heartbeat-0: rate(1 minute)" in console
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert not _port_open(aws_port) and not _port_open(api_port)
    assert not (tmp_path / "run.pid").exists()
    assert "local_scheduler stopped after" in log.read_text()  # SIGTERM: a clean stop
    leftovers = subprocess.run(["pgrep", "-f", f"moto.server.*{aws_port}"], capture_output=True)
    assert leftovers.returncode == 1, "moto server left running"
