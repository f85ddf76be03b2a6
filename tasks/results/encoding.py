"""DynamoDB's low-level wire format as the job records use it.

Typed attribute values (`s()`, `n()`) and back (`item_str`, `item_num`), the records'
timestamp format, the UpdateItem expression builder and the two error answers the records
tell apart. boto3's TypeSerializer would do the values too, but the records only hold
strings, numbers and small maps: two one-line helpers say exactly what is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

# DynamoDB's words for an item over 400 KB (ValidationException).
ITEM_TOO_LARGE_MARKERS = ("item size has exceeded", "item size to update has exceeded")


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def item_str(item: dict, key: str) -> str | None:
    attr = item.get(key)
    return attr.get("S") if attr else None


def item_num(item: dict, key: str) -> int | None:
    attr = item.get(key)
    return int(attr["N"]) if attr and "N" in attr else None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_utc(when: datetime) -> str:
    """The records' timestamp format (utc_now's) for a given time."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms_iso(millis: int) -> str:
    """Epoch milliseconds (the `submitted_at` header) in the records' timestamp format."""
    return iso_utc(datetime.fromtimestamp(millis / 1000, UTC))


def projection(attrs: Iterable[str]) -> dict[str, Any]:
    """ProjectionExpression and names for reading only `attrs`."""
    names = {f"#p{number}": attr for number, attr in enumerate(attrs)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def is_item_too_large(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") == "ValidationException" and any(
        marker in message for marker in ITEM_TOO_LARGE_MARKERS
    )


class Update:
    """One UpdateItem expression built from named assignments."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, dict] = {}

    def set(self, attr: str, value: dict, *, if_absent: bool = False) -> None:
        name, placeholder = f"#{attr}", f":{attr}"
        self.names[name] = attr
        self.values[placeholder] = value
        if if_absent:
            self.sets.append(f"{name} = if_not_exists({name}, {placeholder})")
        else:
            self.sets.append(f"{name} = {placeholder}")

    def remove(self, attr: str) -> None:
        self.names[f"#{attr}"] = attr
        self.removes.append(f"#{attr}")

    def expression(self) -> str:
        parts = ["SET " + ", ".join(self.sets)]
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)
