"""Side effects that happen once per key, even when SQS delivers a job twice.

    with once(self, f"email:{self.request.id}") as mine:
        if mine:
            send_the_email()

A lease, not a flag: the first caller claims the key for `lease_seconds`; when
the block finishes the key is marked done and no later caller runs it. If the
block raises, the claim is given up at once so a retry can run it; if the
process dies inside the block, the claim expires after `lease_seconds` and a
redelivery runs it then. So a crash between the claim and the effect delays
the effect; it never skips it. Choose `lease_seconds` longer than the effect
can take, or a slow first run and a redelivery may overlap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

DEFAULT_LEASE_SECONDS = 300


@contextlib.contextmanager
def once(task: Any, key: str, *, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> Iterator[bool]:
    """Yield True to exactly one caller per key at a time, until one finishes the block."""
    records = task.app.backend.records
    claimed = records.claim_lease(key, lease_seconds)
    if not claimed:
        yield False
        return
    try:
        yield True
    except BaseException:
        records.release_lease(key)
        raise
    records.finish_lease(key)
