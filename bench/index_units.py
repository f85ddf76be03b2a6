"""The listing index's write units per job, from DynamoDB's billing rule and the real writes.

The emulators' request counts cannot show what a global secondary index is billed: DynamoDB
bills it per write of the table, from the item before and after the write (AWS docs,
"Provisioned throughput considerations for Global Secondary Indexes"):

* the write puts an item in the index (it gains both index key attributes): 1 unit;
* the write takes it out (it loses one): 1 unit;
* the write changes an index key attribute's value: 2 units (a delete and a put);
* the write changes a projected attribute only: 1 unit;
* the write changes neither: nothing.

Each unit here is one index entry of up to 1 KB (ours: under 300 bytes). `index_write_units`
applies the rule to one write; `measure` captures the item before and after each UpdateItem
the record code sends (a botocore event hook reading the item with GetItem) and sums it.
tests/test_listing_index.py runs a real job's writes through it, and pins bench/prices.py's
INDEX_WRU_PER_JOB to what it measures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tasks.ops.provision import LIST_PROJECTED

INDEX_KEYS = ("list_pk", "created_at")
TABLE_KEYS = ("job_id",)  # always projected; never changed by an update


def in_index(item: dict | None) -> bool:
    return bool(item) and all(key in item for key in INDEX_KEYS)


def index_write_units(
    before: dict | None,
    after: dict | None,
    projected: Sequence[str] = LIST_PROJECTED,
) -> int:
    """The index write units DynamoDB bills for one write that turned `before` into `after`."""
    was, now = in_index(before), in_index(after)
    if not was and not now:
        return 0
    if was != now:
        return 1  # a new entry, or a removal
    assert before is not None and after is not None
    if any(before[key] != after[key] for key in INDEX_KEYS):
        return 2  # the key moved: the old entry deleted, a new one put
    shown = (*TABLE_KEYS, *projected)
    return 1 if any(before.get(name) != after.get(name) for name in shown) else 0


@contextmanager
def measure(client: Any, table: str) -> Iterator[list[int]]:
    """Within the block, every UpdateItem/PutItem/DeleteItem on `table` sent through
    `client` appends its index write units to the yielded list (before/after: GetItem)."""
    units: list[int] = []
    pending: dict[int, dict | None] = {}
    writes = ("UpdateItem", "PutItem", "DeleteItem")

    def read(key: dict) -> dict | None:
        return client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def before(params: dict, model: Any, context: dict, **_: Any) -> None:
        if model.name in writes and params.get("TableName") == table:
            key = params.get("Key") or {"job_id": params["Item"]["job_id"]}
            context["index_units_key"] = key
            pending[id(context)] = read(key)

    def after(model: Any, context: dict, **_: Any) -> None:
        key = context.get("index_units_key")
        if model.name in writes and key is not None and id(context) in pending:
            units.append(index_write_units(pending.pop(id(context)), read(key)))

    events = client.meta.events
    hooks: list[tuple[str, Callable[..., None]]] = [
        ("before-parameter-build.dynamodb", before),
        ("after-call.dynamodb", after),
    ]
    for name, hook in hooks:
        events.register(name, hook)
    try:
        yield units
    finally:
        for name, hook in hooks:
            events.unregister(name, hook)
