"""Jobs for the claim check's tests (tests/test_large_objects.py): big results, big arguments.

Loaded by that module's worker through JOBS_EXTRA_MODULES=tests.jobs,tests.large_jobs.
"""

from __future__ import annotations

import hashlib

from tasks.jobkit.registry import job


@job(
    schema={"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]},
    public=False,
)
def big_json(self, size: int) -> dict:
    """A result of about `size` bytes of JSON, with structure and non-ASCII text."""
    row = {"word": "é😀", "n": 1}
    return {"rows": [row] * (size // 40), "tail": "x" * 10}  # a row is 40 bytes of JSON


@job(
    schema={
        "type": "object",
        "properties": {"blob": {"type": "string"}, "tag": {"type": "string"}},
        "required": ["blob"],
    },
    public=False,
)
def digest(self, blob: str, tag: str = "") -> dict:
    """What the job was given: the length and sha256 of its argument."""
    return {"len": len(blob), "sha256": hashlib.sha256(blob.encode()).hexdigest(), "tag": tag}


@job(
    schema={"type": "object", "properties": {"blob": {"type": "string"}}, "required": ["blob"]},
    public=False,
)
def digest_after_a_retry(self, blob: str) -> dict:
    """Retries once (its retry message is built from the request's arguments and headers)."""
    if not self.request.retries:
        raise self.retry(countdown=0, max_retries=1)
    return {
        "len": len(blob),
        "sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "retries": self.request.retries,
    }
