"""Container health check: `python -m tasks.worker.health` exits 0 while the worker progresses.

Healthy while the heartbeat file (tasks.worker.liveness) is younger than
WORKER_HEARTBEAT_MAX_AGE seconds (45 by default): that recently a receive from SQS
completed, a job started or finished, or the consumer's event loop pulsed while
every pool process was busy and SQS kept confirming the held messages' visibility
extensions. A worker busy for hours with long jobs therefore stays healthy; a
wedged event loop, a hung connection to SQS or a consumer that stopped consuming
does not (tasks.worker.liveness says within what bound).
Imports nothing but the standard library and the settings: it runs every 30 s in the
container.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tasks.ops.settings import Settings


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


def max_age(settings: Settings) -> float:
    """WORKER_HEARTBEAT_MAX_AGE (the worker paces its busy pulse by it too)."""
    return settings.heartbeat_max_age


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"unhealthy: {exc}")
        return 1
    path = settings.heartbeat_file
    limit = max_age(settings)
    age = heartbeat_age(path)
    if age is None:
        print(f"unhealthy: no heartbeat file at {path} (the worker has not started consuming)")
        return 1
    if age > limit:
        print(
            f"unhealthy: no progress for {age:.0f} s (limit {limit:.0f} s; last: "
            f"{last_progress(path)})"
        )
        return 1
    print(f"healthy: last progress ({last_progress(path)}) {age:.0f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
