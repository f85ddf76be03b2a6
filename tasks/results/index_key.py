"""The listing index's key rule: which status write puts a job in the `by_status` index, where.

The index (tasks.ops.provision.list_index) is sparse: a job item is in it while it carries
`list_pk` = "<status>#<shard>", sorted by `created_at`. DynamoDB bills an index write only
when a write changes the item's index key or a projected attribute (AWS: "Provisioned
throughput considerations for GSIs": a new entry 1 unit, a removal 1, a key change 2, a
projected attribute changed 1), so the rule decides what a job costs (docs/job-record.md):

* a job that ends (SUCCESS, FAILURE, REVOKED), retries (RETRY, the gate's too) or reports
  progress (PROGRESS) is listed under that status by that very write;
* a STARTED write does not list the job (it removes a key an earlier attempt left): a short
  job enters the index once, finished, for 1 unit; a job still running after
  `running_after` seconds is listed under STARTED by its worker's lease renewal
  (tasks.worker.lease_heartbeat), and costs 3 units (enter, then move to its end);
  `running_after` = 0 lists it at the STARTED write, as before (also 3 units);
* any other status a write records (SCHEDULED...) is listed at once.

`shards` (JOBS_LIST_SHARDS) spreads one status over that many partitions by the job id's
last hex digit; 1 (the default) keeps each status in one partition, so a Query's first page
is the newest jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import states

from tasks.ops.provision import LIST_SHARD_DIGITS, list_shard_by_digit, list_shard_names

# Seconds a job runs before it is listed under STARTED: Settings.list_running_after's default.
DEFAULT_RUNNING_AFTER = 10.0
# Listed later than their write (by the lease renewal), unless running_after is 0.
LISTED_LATER = frozenset({states.STARTED})


@dataclass(frozen=True)
class IndexKeys:
    """The key rule with its deploy choices (from Settings: `IndexKeys.of(settings)`)."""

    shards: int = 1
    running_after: float = DEFAULT_RUNNING_AFTER

    def __post_init__(self) -> None:
        list_shard_names(self.shards)  # 1 to 16, else ValueError

    @classmethod
    def of(cls, settings: Any) -> IndexKeys:
        return cls(settings.list_shards, settings.list_running_after)

    def shard(self, job_id: str) -> str:
        """A job's shard: its id's last hex digit modulo `shards`, as one hex digit ("0"
        for an id that does not end in one). The revoke template computes the same."""
        at = LIST_SHARD_DIGITS.find(job_id[-1:].lower()) if job_id else -1
        return list_shard_by_digit(self.shards)[max(at, 0)]

    def pk(self, status: str, job_id: str) -> str:
        return f"{status}#{self.shard(job_id)}"

    def partitions(self, status: str) -> list[str]:
        return [f"{status}#{digit}" for digit in list_shard_names(self.shards)]

    def listed_at_write(self, status: str) -> bool:
        """Whether a write of `status` lists the job (else the lease renewal does, later)."""
        return status not in LISTED_LATER or self.running_after <= 0

    def on_write(self, status: str, job_id: str) -> str | None:
        """The `list_pk` a status write sets, or None: the write leaves the job out of the
        index (and takes out a key an earlier state left there)."""
        return self.pk(status, job_id) if self.listed_at_write(status) else None
