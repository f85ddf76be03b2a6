"""fauxqs (npm), a fast SQS-compatible server, on loopback for the load test.

moto's SQS costs about 1 ms per queued message on every receive, so a queue 10,000 deep
crawls; fauxqs answers in constant time. The benchmarks run it too: the launcher
(bench/fauxqs_server.mjs: 127.0.0.1 only, and the query-protocol SendMessage API Gateway's
SQS integration sends) and the npm install live in bench/servers.py, used here as they are.

    with fast_sqs(log_dir) as endpoint: ...   # http://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench.servers import ServerSet


@contextlib.contextmanager
def emulator(log_dir: Path, name: str) -> Iterator[str]:
    """One of the benchmarks' emulators ("fauxqs", "dynalite") on a free loopback port."""
    log_dir.mkdir(parents=True, exist_ok=True)
    servers = ServerSet(log_dir)
    try:
        yield getattr(servers, name)()
    finally:
        servers.close()


@contextlib.contextmanager
def fast_sqs(log_dir: Path) -> Iterator[str]:
    """fauxqs on a free loopback port; yields its endpoint URL and stops it afterwards."""
    with emulator(log_dir, "fauxqs") as endpoint:
        yield endpoint
