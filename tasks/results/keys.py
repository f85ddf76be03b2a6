"""The keys of the jobs table's items, and the listing index's partition of a job.

One table, partition key `job_id`: a job's own item under its id, and beside it
`group:<id>` (and `group:<id>:page:<n>`) for saved groups, `chord:<id>` (the counter) and
`chord:<id>:<part>` for chords, `lease:<key>` for side-effect leases (tasks.jobkit.once).
"""

from __future__ import annotations

from tasks.results.encoding import s
from tasks.results.index_key import IndexKeys

GROUP_PREFIX = "group:"
LEASE_PREFIX = "lease:"
CHORD_PREFIX = "chord:"
# The sparse index of job items by status (tasks.results.listing, GET /jobs): its partition
# key `list_pk` is "<status>#<shard>"; which write sets it, and the shards, are the rule of
# tasks.results.index_key (docs/job-record.md). LIST_SHARDS: the default, one per status.
LIST_SHARDS = 1


def job_key(item_id: str) -> dict:
    return {"job_id": s(item_id)}


def group_item_id(group_id: str) -> str:
    return GROUP_PREFIX + group_id


def group_page_id(group_id: str, number: int) -> str:
    return f"{GROUP_PREFIX}{group_id}:page:{number}"


def chord_item_id(group_id: str) -> str:
    return CHORD_PREFIX + group_id


def chord_part_id(group_id: str, part_id: str) -> str:
    return f"{CHORD_PREFIX}{group_id}:{part_id}"


def lease_item_id(key: str) -> str:
    return LEASE_PREFIX + key


def list_shard(job_id: str, shards: int = LIST_SHARDS) -> int:
    """The listing shard of a job: its id's last hex digit modulo `shards` (0 if none)."""
    return int(IndexKeys(shards).shard(job_id), 16)


def list_pk(status: str, job_id: str, shards: int = LIST_SHARDS) -> str:
    return IndexKeys(shards).pk(status, job_id)
