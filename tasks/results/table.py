"""The jobs table as the records see it: its client, its TTL, and its strongly consistent reads.

Every part of JobRecords (tasks.results.records) builds on this one base, so that the
client (a callable: a boto3 client must not cross a fork), the table's name and the
expiry are held in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from tasks.results.encoding import n, projection
from tasks.results.index_key import IndexKeys
from tasks.results.keys import job_key

# BatchGetItem reads at most 100 keys a call.
BATCH_GET_LIMIT = 100
# A run lease's length when none is given: Settings' default visibility timeout.
DEFAULT_RUN_LEASE_SECONDS = 300


class JobTable:
    """The table, its expiry (result_expires) and its reads."""

    def __init__(
        self,
        client: Callable[[], Any],
        table: str,
        expires_seconds: int | None,
        run_lease_seconds: int = DEFAULT_RUN_LEASE_SECONDS,
        index_keys: IndexKeys | None = None,
    ):
        self._client = client  # a callable: the boto3 client must not cross a fork
        self.table = table
        self.expires_seconds = expires_seconds
        self.run_lease_seconds = run_lease_seconds  # the queue's visibility timeout
        self.index_keys = index_keys or IndexKeys()  # the listing's key rule (its shards)

    @property
    def client(self):
        return self._client()

    def expires_at(self) -> dict | None:
        if not self.expires_seconds:
            return None
        return n(int(time.time()) + self.expires_seconds)

    # --- reads: strongly consistent, the only ones of the table but the listing's Query ---
    def read(self, item_id: str, *attrs: str) -> dict:
        """One item (GetItem, strongly consistent), only `attrs` if given; {} if none."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": job_key(item_id),
            "ConsistentRead": True,
        }
        if attrs:
            request.update(projection(attrs))
        return self.client.get_item(**request).get("Item") or {}

    def read_many(
        self, item_ids: Iterable[str], *attrs: str, retry_unprocessed: bool = True
    ) -> dict[str, dict]:
        """{id: item} by BatchGetItem, 100 keys a call, strongly consistent; keys
        DynamoDB leaves unprocessed (throttling) are asked again with backoff, or, with
        retry_unprocessed=False, left out for the caller's next look."""
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, dict] = {}
        extra = projection(("job_id", *attrs)) if attrs else {}
        for start in range(0, len(ids), BATCH_GET_LIMIT):
            request: dict | None = {
                self.table: {
                    "Keys": [job_key(i) for i in ids[start : start + BATCH_GET_LIMIT]],
                    "ConsistentRead": True,
                    **extra,
                }
            }
            delay = 0.05
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    found[item["job_id"]["S"]] = item
                request = response.get("UnprocessedKeys") or None
                if request and not retry_unprocessed:
                    break
                if request:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return found
