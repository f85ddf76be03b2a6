"""Emulators the benchmarks run against: fauxqs for SQS, moto's server for DynamoDB.

Every server binds 127.0.0.1 on a free port and is stopped by `ServerSet.close()`.
fauxqs is installed with npm into a cache folder outside the repository on first use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_DIR = Path(os.environ.get("BENCH_NODE_DIR", Path.home() / ".cache" / "sqs-jobs-bench"))
FAUXQS_VERSION = os.environ.get("BENCH_FAUXQS_VERSION", "1.9.2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def ensure_fauxqs() -> Path:
    """The node_modules folder holding fauxqs, installing it with npm if missing."""
    modules = NODE_DIR / "node_modules"
    if (modules / "fauxqs" / "dist" / "app.js").exists():
        return modules
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to install fauxqs (Node.js 20+)")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing fauxqs@{FAUXQS_VERSION} into {NODE_DIR} ...", file=sys.stderr)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
         "--prefix", str(NODE_DIR), f"fauxqs@{FAUXQS_VERSION}"],
        check=True, stdout=subprocess.DEVNULL,
    )
    return modules


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class ServerSet:
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], port: int) -> str:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (lives with the process)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        wait_for_port(port, proc)
        return f"http://127.0.0.1:{port}"

    def fauxqs(self) -> str:
        modules = ensure_fauxqs()
        port = free_port()
        return self._spawn("fauxqs", ["node", str(HERE / "fauxqs_server.mjs"), str(port),
                                      str(modules)], port)

    def moto(self) -> str:
        port = free_port()
        exe = Path(sys.executable).with_name("moto_server")
        return self._spawn("moto", [str(exe), "-H", "127.0.0.1", "-p", str(port)], port)

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()
