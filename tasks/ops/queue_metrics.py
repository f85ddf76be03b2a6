"""SQS's CloudWatch metrics a person reads: `python -m ecs status` and the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def oldest_message_age(cloudwatch: Any, queue: str, now: datetime | None = None) -> int | None:
    """Seconds of the queue's oldest message: the latest one-minute maximum of SQS's
    ApproximateAgeOfOldestMessage over the last 15 minutes (SQS sends it every minute, a
    few minutes behind); None if there is no point (an idle or new queue)."""
    now = now or datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue}],
        StartTime=now - timedelta(minutes=15),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    if not points:
        return None
    return int(max(points, key=lambda p: p["Timestamp"])["Maximum"])
