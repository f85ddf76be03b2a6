"""The forms and names the OpenAPI document and the mapping templates agree on.

The patterns are the very regexes the templates match values against (String.matches: the
whole value); tests/test_api_conformance.py finds each in its templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Celery task ids and API Gateway request ids are both UUIDs.
UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# X-Callback-Url: https, or http to this host; printable ASCII, no quote or backslash.
HTTPS_URL_REGEX = r"https://[\x21\x23-\x5B\x5D-\x7E]+"
LOCAL_URL_REGEX = (
    r"http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?"
    r"([/?][\x21\x23-\x5B\x5D-\x7E]*)?"
)
# Delay-Seconds and X-Countdown: 0 to 315360000 (ten years), digits without sign or leading
# zero (send_task.request: up to 900 s SQS holds the message, past that the worker defers it).
DELAY_SECONDS_REGEX = (
    "0|[1-9][0-9]{0,7}|[12][0-9]{8}|30[0-9]{7}|31[0-4][0-9]{6}|315[0-2][0-9]{5}"
    "|3153[0-5][0-9]{4}|315360000"
)
# Eta: a UTC time in ISO 8601 (a real day, at most ten years ahead: the template checks).
ETA_REGEX = (
    r"(19[7-9][0-9]|[2-9][0-9]{3})-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,3})?(Z|\+00:00)"
)
# GET /jobs: task, since and the form of a cursor (base64url of 6 or 66 bytes).
TASK_FILTER_REGEX = "[A-Za-z0-9_.:-]{1,255}"
SINCE_REGEX = (
    r"[0-9]{4}-[01][0-9]-[0-3][0-9]"
    r"(T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z)?"
)
CURSOR_FORM_REGEX = "[A-Za-z0-9_-]{8}|[A-Za-z0-9_-]{88}"
JOB_ID_PATTERN = f"^{UUID_REGEX}$"
JSON = "application/json"
CORS_ALLOW_HEADERS = (
    "Content-Type,X-Api-Key,Idempotency-Key,X-Callback-Url,Delay-Seconds,X-Countdown,Eta"
)
CORS_MAX_AGE = "600"
# Seconds a client is told to wait after a throttled (429) or unavailable (503) answer; the
# templates that set it through $context.responseOverride write the same literal.
RETRY_AFTER_SECONDS = "1"
# A body of up to 1,024 UTF-16 units is copied into kwargsrepr, 6 bytes a unit at worst.
KWARGSREPR_MAX_CHARS = 1024 * 6
SAMPLE_ID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class AwsTargets:
    region: str
    account_id: str
    queue_name: str
    table_name: str
    role_arn: str  # API Gateway's integration credentials role
    partition: str = "aws"  # aws-cn, aws-us-gov: the integration URIs' ARN partition
    result_expires: int = 7 * 24 * 3600  # the TTL a DELETE gives a record (JOBS_RESULT_EXPIRES)
    bucket_name: str = "jobs-payloads"  # large results (GET /jobs/{id}/result): JOBS_BUCKET
    list_shards: int = 1  # the listing index's partitions per status: JOBS_LIST_SHARDS


def model_name(task_name: str) -> str:
    """API Gateway model names are alphanumeric: tasks.debug.add -> TasksDebugAdd."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", task_name))
