"""`make run`: the whole pipeline on this machine.

Starts moto's server (the embedded AWS) on 127.0.0.1:4566, creates the queue,
dead-letter queue and table with the same code `python -m ecs deploy` uses,
starts a worker, the local scheduler (the jobs' schedules, as EventBridge
Scheduler fires them on AWS) and the API shim (gunicorn), prints how to use them and
streams their logs. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("LOCAL_RUN_DIR", ROOT / ".run"))
PID_FILE = RUN_DIR / "run.pid"
AWS_PORT = int(os.environ.get("LOCAL_AWS_PORT", "4566"))
API_PORT = int(os.environ.get("LOCAL_API_PORT", "8000"))
ENDPOINT = f"http://127.0.0.1:{AWS_PORT}"
COLOURS = {"aws": "\033[90m", "worker": "\033[36m", "api": "\033[35m", "sched": "\033[33m"}
RESET = "\033[0m"


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def already_running() -> str | None:
    if PID_FILE.exists():
        try:
            pid = int(PID_FILE.read_text())
            os.kill(pid, 0)
            return (
                f"`make run` is already running (pid {pid}); "
                f"the page is at http://127.0.0.1:{API_PORT}/"
            )
        except (ValueError, ProcessLookupError, PermissionError):
            PID_FILE.unlink(missing_ok=True)
    for port, what in ((AWS_PORT, "the AWS emulator"), (API_PORT, "the API")):
        if port_in_use(port):
            return (
                f"port {port} ({what}) is already in use by another program; stop it, or "
                f"choose other ports with LOCAL_AWS_PORT / LOCAL_API_PORT"
            )
    return None


# The emulator's own request log (a line per long poll, and red 400s for the existence
# checks provisioning makes) and its development-server banner: not the stack's news.
EMULATOR_NOISE = re.compile(
    r'"(?:\x1b\[[0-9;]*m)*[A-Z]+ \S+ HTTP/1\.[01](?:\x1b\[[0-9;]*m)*" \d{3} '
    r"|This is a development server|Press CTRL\+C to quit|Running on http"
)


LOCAL_CALLBACK_SECRET = "local-callback-secret"


def emulator_noise(line: str) -> bool:
    return bool(EMULATOR_NOISE.search(line))


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("JOBS_TARGET", "local")
    env.setdefault("AWS_ENDPOINT_URL", ENDPOINT)
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Completion callbacks are refused without a key: a fixed one for this machine only.
    env.setdefault("JOBS_CALLBACK_SECRET", LOCAL_CALLBACK_SECRET)
    # A job with a schedule, so the local scheduler has something to show (never deployed).
    env.setdefault("JOBS_EXTRA_MODULES", "tasks.demo_schedules")
    return env


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = environment()

    def start(self, label: str, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.procs.append((label, proc))
        threading.Thread(target=self._pump, args=(label, proc), daemon=True).start()
        return proc

    @staticmethod
    def _pump(label: str, proc: subprocess.Popen) -> None:
        colour = COLOURS.get(label, "") if sys.stdout.isatty() else ""
        reset = RESET if colour else ""
        for line in proc.stdout:
            if label == "aws" and emulator_noise(line):
                continue
            sys.stdout.write(f"{colour}[{label:6}]{reset} {line}")
            sys.stdout.flush()

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for label, proc in reversed(self.procs):
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"{label} did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def wait_for_port(self, port: int, label: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_in_use(port):
                return
            if any(p.poll() is not None for _, p in self.procs):
                raise SystemExit(f"{label} exited during start-up; see its log above")
            time.sleep(0.2)
        raise SystemExit(f"{label} did not open port {port} within {timeout:.0f}s")


def banner() -> str:
    return f"""
  ready:
    AWS emulator  {ENDPOINT}  (moto: SQS + DynamoDB + S3)
    worker        celery -A tasks worker
    scheduler     python -m tasks.ops.local_scheduler  (the jobs' schedules; [sched] lines)
    API + page    http://127.0.0.1:{API_PORT}/
    console       http://127.0.0.1:{API_PORT}/console/  (queue, DLQ, jobs, cancel, redrive)

  submit from Python (another terminal, in this directory):
    JOBS_TARGET=local .venv/bin/python -c "from tasks.text import analyze; \\
r = analyze.delay(text='Long work waits its turn. Workers do it.'); print(r.get(timeout=30))"

  or over HTTP:
    curl -s -X POST http://127.0.0.1:{API_PORT}/tasks/tasks.text.analyze \\
         -H 'Content-Type: application/json' -d '{{"text": "Hello there. How are you?"}}'
    curl -s http://127.0.0.1:{API_PORT}/jobs/<job_id>

  completion callbacks: add -H 'X-Callback-Url: http://127.0.0.1:<port>/hook' to the POST;
    signed with JOBS_CALLBACK_SECRET ({LOCAL_CALLBACK_SECRET} unless you set one)

  Ctrl-C stops everything.
"""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    problem = already_running()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    RUN_DIR.mkdir(exist_ok=True)
    PID_FILE.write_text(str(os.getpid()))
    stack = Stack()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start(
            "aws", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(AWS_PORT)]
        )
        stack.wait_for_port(AWS_PORT, "moto server")
        subprocess.run(
            [sys.executable, "-m", "tasks.ops.provision"], cwd=ROOT, env=stack.env, check=True
        )
        stack.start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-l",
                "info",
                "-n",
                "local@%h",
            ],
        )
        # The jobs' schedules, fired as EventBridge Scheduler fires them on AWS.
        stack.start("sched", [sys.executable, "-m", "tasks.ops.local_scheduler"])
        stack.start(
            "api",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:api_shim.gunicorn_conf",
                "-b",
                f"127.0.0.1:{API_PORT}",
                "api_shim.app:create_app()",
            ],
        )
        stack.wait_for_port(API_PORT, "API shim")
        print(banner(), flush=True)
        while all(p.poll() is None for _, p in stack.procs):
            time.sleep(0.5)
        dead = [label for label, p in stack.procs if p.poll() is not None]
        print(f"{', '.join(dead)} stopped unexpectedly; shutting down the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        stack.stop()
        PID_FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
