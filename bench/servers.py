"""Emulators the benchmarks run against: fauxqs for SQS, dynalite for DynamoDB.

Both are Node.js servers (npm), installed on first use into a cache folder outside the
repository (`~/.cache/sqs-jobs-bench`, or BENCH_NODE_DIR), each started from a few lines
of Node (bench/*_server.mjs) that bind 127.0.0.1 on a free port; `ServerSet.close()`
stops them. moto's server is not used: it spends about 11 ms of CPU on each conditional
UpdateItem, so it, not the worker, was what the benchmarks measured.
"""

from __future__ import annotations

import contextlib
import json
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
DYNALITE_VERSION = os.environ.get("BENCH_DYNALITE_VERSION", "4.0.0")
# Installed together on first use: one npm run for both.
NODE_PACKAGES = {"fauxqs": FAUXQS_VERSION, "dynalite": DYNALITE_VERSION}
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def installed_version(modules: Path, name: str) -> str | None:
    try:
        return json.loads((modules / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_modules(**packages: str) -> Path:
    """The node_modules folder holding `packages` (name=version); npm installs what is
    missing or at another version."""
    modules = NODE_DIR / "node_modules"
    missing = [
        f"{name}@{version}"
        for name, version in packages.items()
        if installed_version(modules, name) != version
    ]
    if not missing:
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError(f"Node.js 20+ and npm are needed for {', '.join(missing)}")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(missing)} into {NODE_DIR} ...", file=sys.stderr)
    subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(NODE_DIR),
            *missing,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
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


def process_cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of one live process (all its threads), 0 if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class ServerSet:
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # emulator name -> pid

    def _spawn(self, name: str, args: list[str], port: int) -> str:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (lives with the process)
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.pids[name] = proc.pid
        wait_for_port(port, proc)
        return f"http://127.0.0.1:{port}"

    def _node(self, name: str) -> str:
        modules = npm_modules(**NODE_PACKAGES)
        port = free_port()
        return self._spawn(
            name, ["node", str(HERE / f"{name}_server.mjs"), str(port), str(modules)], port
        )

    def fauxqs(self) -> str:
        return self._node("fauxqs")

    def dynalite(self) -> str:
        return self._node("dynalite")

    def versions(self) -> dict[str, str]:
        modules = NODE_DIR / "node_modules"
        return {name: installed_version(modules, name) or "absent" for name in self.pids}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each emulator has used so far, by name."""
        return {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()
