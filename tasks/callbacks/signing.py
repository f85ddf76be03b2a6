"""The completion callback's signature: `X-Signature: t=<unix seconds>,v1=<hex>`.

v1 = HMAC-SHA256(secret, f"{t}.".encode() + body), body being the exact bytes sent. The
timestamp is signed with the body, so a receiver that refuses old timestamps (docs/callbacks.md's
example: five minutes) cannot be fed a recorded request again later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Signature"
TOLERANCE_SECONDS = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    return signature(secret, body, int(time.time() if now is None else now))


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does (docs/callbacks.md shows the same in ten lines)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
