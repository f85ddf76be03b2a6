"""Container health check: `python -m tasks.worker.health` exits 0 while the worker progresses.

Healthy while the heartbeat file (tasks.worker.progress) is younger than
WORKER_HEARTBEAT_MAX_AGE seconds (45 by default): a receive from SQS completed,
or a job started, finished or had its visibility extended, that recently.
Imports nothing but the standard library: it runs every 30 s in the container.
"""

from __future__ import annotations

import json
import os
import sys
import time

DEFAULT_MAX_AGE = 45.0
DEFAULT_FILE = "/tmp/worker-heartbeat"


def heartbeat_age(path: str) -> float | None:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return None


def last_progress(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return str(json.load(fh).get("kind", "?"))
    except (OSError, ValueError, AttributeError):
        return "?"


def main() -> int:
    path = os.environ.get("WORKER_HEARTBEAT_FILE") or DEFAULT_FILE
    max_age = float(os.environ.get("WORKER_HEARTBEAT_MAX_AGE") or DEFAULT_MAX_AGE)
    age = heartbeat_age(path)
    if age is None:
        print(f"unhealthy: no heartbeat file at {path} (the worker has not started consuming)")
        return 1
    if age > max_age:
        print(f"unhealthy: no progress for {age:.0f} s (limit {max_age:.0f} s; last: "
              f"{last_progress(path)})")
        return 1
    print(f"healthy: last progress ({last_progress(path)}) {age:.0f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
