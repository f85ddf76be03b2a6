"""What the worker reads off a kombu message received from SQS."""

from __future__ import annotations


def receive_count(message) -> int | None:
    """SQS's ApproximateReceiveCount of a kombu message, if the transport gave it."""
    try:
        raw = message.delivery_info["sqs_message"]["Attributes"]["ApproximateReceiveCount"]
    except (AttributeError, KeyError, TypeError):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def message_id(message) -> str | None:
    """SQS's MessageId of a kombu message: the same on every receive of that message."""
    try:
        value = message.delivery_info["sqs_message"]["MessageId"]
    except (AttributeError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) and value else None


def sqs_location(message) -> tuple[str, str] | None:
    """(queue URL, receipt handle) of a kombu message received from SQS, if it has them."""
    info = getattr(message, "delivery_info", None) or {}
    try:
        return info["sqs_queue"], info["sqs_message"]["ReceiptHandle"]
    except (KeyError, TypeError):
        return None
