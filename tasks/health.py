"""Container health check: `python -m tasks.health` exits 0 while the heartbeat file is fresh."""

from __future__ import annotations

import os
import sys
import time

from tasks.settings import Settings

MAX_AGE_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_MAX_AGE", "60"))


def heartbeat_age(path: str) -> float | None:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return None


def main() -> int:
    path = Settings.from_env().heartbeat_file
    age = heartbeat_age(path)
    if age is None:
        print(f"unhealthy: no heartbeat file at {path}")
        return 1
    if age > MAX_AGE_SECONDS:
        print(f"unhealthy: heartbeat is {age:.0f}s old (limit {MAX_AGE_SECONDS:.0f}s)")
        return 1
    print(f"healthy: heartbeat {age:.0f}s old")
    return 0


if __name__ == "__main__":
    sys.exit(main())
