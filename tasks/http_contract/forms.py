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
# Delay-Seconds: 0 to 900 (SQS's DelaySeconds), digits without sign or leading zero.
DELAY_SECONDS_REGEX = "0|[1-9][0-9]?|[1-8][0-9]{2}|900"
# GET /jobs: task, since and the form of a cursor (base64url of 6 or 66 bytes).
TASK_FILTER_REGEX = "[A-Za-z0-9_.:-]{1,255}"
SINCE_REGEX = (
    r"[0-9]{4}-[01][0-9]-[0-3][0-9]"
    r"(T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z)?"
)
CURSOR_FORM_REGEX = "[A-Za-z0-9_-]{8}|[A-Za-z0-9_-]{88}"
JOB_ID_PATTERN = f"^{UUID_REGEX}$"
JSON = "application/json"
CORS_ALLOW_HEADERS = "Content-Type,X-Api-Key,Idempotency-Key,X-Callback-Url,Delay-Seconds"
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


def model_name(task_name: str) -> str:
    """API Gateway model names are alphanumeric: tasks.debug.add -> TasksDebugAdd."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", task_name))
