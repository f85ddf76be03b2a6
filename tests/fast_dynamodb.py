"""dynalite (npm), an independent DynamoDB implementation, on loopback for the load test.

At load, moto's server spends about 9 ms of CPU on each of our conditional UpdateItem
calls (measured here: 2,000 jobs, 4,000 writes, 37 CPU-seconds), which alone caps the
pipeline near 40 jobs/s on two cores; dynalite takes under 1 ms for the same writes. Its
launcher (bench/dynalite_server.mjs: 127.0.0.1 only, in memory, and the Time to Live calls
dynalite lacks) is the benchmarks' own.

    with fast_dynamodb(log_dir) as endpoint: ...   # http://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.fast_sqs import emulator


@contextlib.contextmanager
def fast_dynamodb(log_dir: Path) -> Iterator[str]:
    """dynalite on a free loopback port; yields its endpoint URL and stops it afterwards."""
    with emulator(log_dir, "dynalite") as endpoint:
        yield endpoint
