"""The document's operations, one per route and method, with their API Gateway integrations.

Integration responses are chosen by the integration's HTTP status (API Gateway's selection
patterns for AWS service integrations); the templates read the body where one status means
several things (SQS's and DynamoDB's 400s: too large, throttled, or a deployment fault).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tasks.http_contract.forms import (
    CORS_ALLOW_HEADERS,
    CORS_MAX_AGE,
    CURSOR_FORM_REGEX,
    DELAY_SECONDS_REGEX,
    ETA_REGEX,
    HTTPS_URL_REGEX,
    JOB_ID_PATTERN,
    JSON,
    KWARGSREPR_MAX_CHARS,
    LOCAL_URL_REGEX,
    RETRY_AFTER_SECONDS,
    SAMPLE_ID,
    SINCE_REGEX,
    TASK_FILTER_REGEX,
    UUID_REGEX,
    AwsTargets,
    model_name,
)
from tasks.http_contract.mapping_templates import exposed_words, fill_template, load_template


def max_body_bytes(request_template: str) -> int:
    """The largest request body whose SQS message always fits, whatever its characters.

    The message is base64(envelope), and the envelope holds base64([[], body, embed]) plus at
    most KWARGSREPR_MAX_CHARS of kwargsrepr: the fixed parts are measured from the template.
    A larger body may still fit (SQS decides, by the message's size); this one always does.
    """
    import base64
    import urllib.parse

    from tasks.http_contract.vtl import Params, render
    from tasks.ops.provision import MAX_MESSAGE_BYTES

    # The longest headers the template admits: a 13-digit submitted_at, a 2,048-character
    # callback_url, an eta.
    longest = Params(
        header={
            "Idempotency-Key": SAMPLE_ID,
            "X-Callback-Url": "https://" + "a" * (2048 - 8),
            "Delay-Seconds": "900",
        }
    )
    sample = render(
        request_template,
        body="{}",
        params=longest,
        context={"requestId": SAMPLE_ID, "requestTimeEpoch": 9_999_999_999_999},
    ).text
    message = urllib.parse.parse_qs(sample)["MessageBody"][0]
    envelope = json.loads(base64.b64decode(message))
    inner_b64 = envelope["body"]
    inner_overhead = len(base64.b64decode(inner_b64)) - len("{}")
    fixed = len(base64.b64decode(message)) - len(inner_b64) - len(envelope["headers"]["kwargsrepr"])
    envelope_max = (MAX_MESSAGE_BYTES // 4) * 3
    inner_b64_max = envelope_max - fixed - KWARGSREPR_MAX_CHARS
    return (inner_b64_max // 4) * 3 - inner_overhead


def catalog_json(jobs: dict[str, Any]) -> str:
    """GET /tasks: the public tasks and their argument schemas, as literal template text.

    `$` and `#` are written as JSON escapes, so Velocity passes the text through unchanged.
    """
    catalog = {
        "tasks": [
            {
                "name": spec.name,
                "summary": spec.summary,
                "schema": spec.schema,
                "path": f"/tasks/{spec.name}",
            }
            for spec in jobs.values()
        ]
    }
    text = json.dumps(catalog, ensure_ascii=False, sort_keys=False)
    return text.replace("$", "\\u0024").replace("#", "\\u0023")


def _cors(methods: str) -> dict[str, str]:
    return {
        "method.response.header.Access-Control-Allow-Origin": "'*'",
        "method.response.header.Access-Control-Allow-Headers": f"'{CORS_ALLOW_HEADERS}'",
        "method.response.header.Access-Control-Allow-Methods": f"'{methods}'",
        "method.response.header.Access-Control-Max-Age": f"'{CORS_MAX_AGE}'",
    }


_ORIGIN = {"method.response.header.Access-Control-Allow-Origin": "'*'"}
_RETRY = {**_ORIGIN, "method.response.header.Retry-After": f"'{RETRY_AFTER_SECONDS}'"}
_STRING = {"schema": {"type": "string"}}
_ORIGIN_HEADER = {"Access-Control-Allow-Origin": _STRING}
_RETRY_HEADERS = {**_ORIGIN_HEADER, "Retry-After": _STRING}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers or _ORIGIN_HEADER,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _retry_responses(what: str) -> dict[str, Any]:
    return {
        "429": _error_response(
            f"{what} is throttling: retry after Retry-After seconds", _RETRY_HEADERS
        ),
        "502": _error_response(f"{what} refused the request (a deployment fault)"),
        "503": _error_response(
            f"{what} is unavailable: retry after Retry-After seconds", _RETRY_HEADERS
        ),
    }


def _integration_response(
    status: str, template: str, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "responseParameters": parameters or _ORIGIN,
        "responseTemplates": {JSON: template},
    }


def path_parameter(name: str, pattern: str | None = None) -> list[dict[str, Any]]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return [{"name": name, "in": "path", "required": True, "schema": schema}]


def options(methods: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """CORS preflight: a mock integration, never behind the API key."""
    headers = {
        h: _STRING
        for h in (
            "Access-Control-Allow-Origin",
            "Access-Control-Allow-Headers",
            "Access-Control-Allow-Methods",
            "Access-Control-Max-Age",
        )
    }
    return {
        "summary": "CORS preflight",
        **({"parameters": parameters} if parameters else {}),
        "responses": {"200": {"description": "CORS headers", "headers": headers}},
        "x-amazon-apigateway-integration": {
            "type": "mock",
            "requestTemplates": {JSON: load_template("mock.request")},
            "passthroughBehavior": "when_no_match",
            "responses": {
                "default": {
                    "statusCode": "200",
                    "responseParameters": _cors(methods),
                    "responseTemplates": {JSON: ""},
                }
            },
        },
    }


def _security(api_key_required: bool) -> dict[str, Any]:
    return {"security": [{"api_key": []}]} if api_key_required else {}


# POST /tasks/{name}'s optional headers (method.request.header.*): send_task.request checks
# their form itself (a malformed one is a 400 saying the form, never a message). An empty
# value is no header: $input.params('<name>') is '' for both, so the templates treat them
# alike, and the patterns admit ''.
SUBMIT_HEADERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A UUID: the job id. A retried POST with the same key answers the same "
        "job id, and the job runs once. Empty: no key.",
        "schema": {"type": "string", "pattern": f"^({UUID_REGEX})?$"},
    },
    {
        "name": "X-Callback-Url",
        "in": "header",
        "required": False,
        "description": "An https URL told of the job's outcome (http to 127.0.0.1, localhost "
        "or [::1] for local use); at most 2,048 printable ASCII characters, "
        "without quotes, backslashes or spaces. Empty: no callback.",
        "schema": {
            "type": "string",
            "maxLength": 2048,
            "pattern": f"^({HTTPS_URL_REGEX}|{LOCAL_URL_REGEX})?$",
        },
    },
    {
        "name": "Delay-Seconds",
        "in": "header",
        "required": False,
        "description": "Seconds before the job may run, 0 to 315360000 (ten years); no "
        "worker holds it (up to 900 s SQS holds the message; further ahead the job waits "
        "as SCHEDULED in a one-time schedule). The answer and the job's message carry its "
        "`eta`. Digits without sign or leading zero. Empty or 0: no delay. At most one "
        "of Delay-Seconds, X-Countdown and Eta.",
        "schema": {"type": "string", "pattern": f"^({DELAY_SECONDS_REGEX})?$"},
    },
    {
        "name": "X-Countdown",
        "in": "header",
        "required": False,
        "description": "The same as Delay-Seconds (Celery's `countdown=`).",
        "schema": {"type": "string", "pattern": f"^({DELAY_SECONDS_REGEX})?$"},
    },
    {
        "name": "Eta",
        "in": "header",
        "required": False,
        "description": "When the job may run (Celery's `eta=`): a UTC time in ISO 8601 such "
        "as 2026-12-06T20:00:00Z (Z or +00:00, up to 3 decimals), a real day at most ten "
        "years ahead; a time past is no delay.",
        "schema": {"type": "string", "pattern": f"^({ETA_REGEX})?$"},
    },
]


def submit(spec: Any, targets: AwsTargets, api_key_required: bool) -> dict[str, Any]:
    names = {"task_name": spec.name, "queue_name": targets.queue_name}
    request = fill_template("send_task.request", **names)
    refused = fill_template("send_task.error", max_body_bytes=str(max_body_bytes(request)))
    return {
        "operationId": "submit_" + re.sub(r"\W", "_", spec.name),
        "summary": spec.summary or spec.name,
        "tags": ["tasks"],
        "parameters": SUBMIT_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": {"$ref": f"#/components/schemas/{model_name(spec.name)}"}}
            },
        },
        "responses": {
            "202": {
                "description": "Queued",
                "headers": _ORIGIN_HEADER,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/JobAccepted"}}},
            },
            "400": _error_response(
                "The body is not JSON or does not match the schema, or "
                "Idempotency-Key, X-Callback-Url, Delay-Seconds, X-Countdown or Eta is "
                "malformed, or more than one of the last three is given"
            ),
            "403": _error_response("Missing or wrong API key"),
            "413": _error_response("The body is too large for one queue message"),
            "415": _error_response("The body is not application/json"),
            **_retry_responses("The queue"),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-request-validator": "body-and-params",
        "x-amazon-apigateway-integration": {
            "type": "aws",
            "httpMethod": "POST",
            "uri": (
                f"arn:{targets.partition}:apigateway:{targets.region}:sqs:path/"
                f"{targets.account_id}/{targets.queue_name}"
            ),
            "credentials": targets.role_arn,
            "requestParameters": {
                "integration.request.header.Content-Type": "'application/x-www-form-urlencoded'",
            },
            "requestTemplates": {JSON: request},
            "passthroughBehavior": "never",
            # Keys are selection patterns, matched against the integration's HTTP status.
            "responses": {
                "default": _integration_response("202", load_template("send_task.response")),
                # API Gateway keys integration responses by status code: one for all 4xx.
                # SQS's 400 says a message is over the queue's size limit (the template
                # overrides to 413) or that SQS throttles (429 with Retry-After); anything
                # else is a deployment fault (502).
                r"4\d{2}": _integration_response("502", refused),
                r"5\d{2}": _integration_response(
                    "503", load_template("send_task.unavailable"), _RETRY
                ),
            },
        },
    }


def unknown_task(api_key_required: bool) -> dict[str, Any]:
    """Any other /tasks/{name}: 404 (API Gateway prefers the literal resources above)."""
    return {
        "operationId": "unknown_task",
        "summary": "Not a public task",
        "parameters": path_parameter("name"),
        "responses": {
            "403": _error_response("Missing or wrong API key"),
            "404": _error_response("No public task has this name"),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-integration": {
            "type": "mock",
            "requestTemplates": {JSON: load_template("mock.request")},
            "passthroughBehavior": "when_no_match",
            "responses": {
                "default": {
                    "statusCode": "404",
                    "responseParameters": _ORIGIN,
                    "responseTemplates": {JSON: load_template("unknown_task.response")},
                }
            },
        },
    }


def catalog(jobs: dict[str, Any], api_key_required: bool) -> dict[str, Any]:
    return {
        "operationId": "list_tasks",
        "summary": "The public tasks and the JSON Schema of their arguments",
        "tags": ["tasks"],
        "responses": {
            "200": {
                "description": "Task catalog",
                "headers": _ORIGIN_HEADER,
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            "403": _error_response("Missing or wrong API key"),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-integration": {
            "type": "mock",
            "requestTemplates": {JSON: load_template("mock.request")},
            "passthroughBehavior": "when_no_match",
            "responses": {
                "default": {
                    "statusCode": "200",
                    "responseParameters": _ORIGIN,
                    "responseTemplates": {JSON: catalog_json(jobs)},
                }
            },
        },
    }


def get_job(targets: AwsTargets, jobs: dict[str, Any], api_key_required: bool) -> dict[str, Any]:
    record = fill_template("get_job.response", exposed=exposed_words(jobs))
    return {
        "operationId": "get_job",
        "summary": "A job's status, progress and result",
        "tags": ["jobs"],
        "parameters": path_parameter("job_id", JOB_ID_PATTERN),
        "responses": {
            "200": {
                "description": "The job record (PENDING when there is none yet)",
                "headers": _ORIGIN_HEADER,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Job"}}},
            },
            "400": _error_response("The job id is not a UUID"),
            "403": _error_response("Missing or wrong API key"),
            **_retry_responses("The job table"),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-request-validator": "params-only",
        "x-amazon-apigateway-integration": {
            "type": "aws",
            "httpMethod": "POST",
            "uri": f"arn:{targets.partition}:apigateway:{targets.region}:dynamodb:action/GetItem",
            "credentials": targets.role_arn,
            "requestTemplates": {
                JSON: fill_template("get_job.request", table_name=targets.table_name)
            },
            "passthroughBehavior": "never",
            "responses": {
                "default": _integration_response("200", record),
                # DynamoDB's 400 says it throttles (the template overrides to 429 with
                # Retry-After); any other 4xx is a deployment fault (502).
                r"4\d{2}": _integration_response("502", load_template("get_job.error")),
                r"5\d{2}": _integration_response(
                    "503", load_template("get_job.unavailable"), _RETRY
                ),
            },
        },
    }


def revoke_job(targets: AwsTargets, jobs: dict[str, Any], api_key_required: bool) -> dict[str, Any]:
    """DELETE /jobs/{job_id}: the revoke transition as one conditional UpdateItem."""
    from tasks.ops.provision import list_shard_by_digit

    record = fill_template("revoke_job.response", exposed=exposed_words(jobs))
    request = fill_template(
        "revoke_job.request",
        table_name=targets.table_name,
        result_expires=str(int(targets.result_expires)),
        shard_by_digit=list_shard_by_digit(targets.list_shards),
    )
    job = {JSON: {"schema": {"$ref": "#/components/schemas/Job"}}}
    return {
        "operationId": "revoke_job",
        "summary": "Cancel a job that has not finished (Celery's revoke)",
        "tags": ["jobs"],
        "parameters": path_parameter("job_id", JOB_ID_PATTERN),
        "responses": {
            "200": {
                "description": "The job record, REVOKED (now, or already before)",
                "headers": _ORIGIN_HEADER,
                "content": job,
            },
            "400": _error_response("The job id is not a UUID"),
            "403": _error_response("Missing or wrong API key"),
            "409": {
                "description": "The job had already finished: its record, unchanged",
                "headers": _ORIGIN_HEADER,
                "content": job,
            },
            **_retry_responses("The job table"),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-request-validator": "params-only",
        "x-amazon-apigateway-integration": {
            "type": "aws",
            "httpMethod": "POST",
            "uri": (
                f"arn:{targets.partition}:apigateway:{targets.region}:dynamodb:action/UpdateItem"
            ),
            "credentials": targets.role_arn,
            "requestTemplates": {JSON: request},
            "passthroughBehavior": "never",
            "responses": {
                "default": _integration_response("200", record),
                # DynamoDB's 400: the condition refused it (a finished job: 409, or 200 for
                # one already REVOKED), or it throttles (429); the same template tells them
                # apart by the body. Anything else is a deployment fault (502).
                r"4\d{2}": _integration_response("502", record),
                r"5\d{2}": _integration_response(
                    "503", load_template("get_job.unavailable"), _RETRY
                ),
            },
        },
    }


def get_job_result(targets: AwsTargets, api_key_required: bool) -> dict[str, Any]:
    """GET /jobs/{job_id}/result: a result kept in S3 (`result_url` of GET /jobs/{job_id}),
    read by API Gateway itself, a GetObject of `results/<job_id>.json`, passed through."""
    error = load_template("get_job_result.error")
    return {
        "operationId": "get_job_result",
        "summary": "A result too large for the job record, as JSON (at most 10 MB here: "
        "API Gateway's response limit)",
        "tags": ["jobs"],
        "parameters": path_parameter("job_id", JOB_ID_PATTERN),
        "responses": {
            "200": {
                "description": "The job's return value, as JSON",
                "headers": {**_ORIGIN_HEADER, "Content-Type": _STRING},
                "content": {JSON: {"schema": {}}},
            },
            "400": _error_response("The job id is not a UUID"),
            "403": _error_response("Missing or wrong API key"),
            "404": _error_response(
                "No result is stored for this job (not finished, small "
                "enough to be in its record, or expired)"
            ),
            "503": _error_response(
                "The results bucket is unavailable: retry after Retry-After seconds", _RETRY_HEADERS
            ),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-request-validator": "params-only",
        "x-amazon-apigateway-integration": {
            "type": "aws",
            "httpMethod": "GET",
            "uri": (
                f"arn:{targets.partition}:apigateway:{targets.region}:s3:path/"
                f"{targets.bucket_name}/results/{{job_id}}.json"
            ),
            "credentials": targets.role_arn,
            "requestParameters": {"integration.request.path.job_id": "method.request.path.job_id"},
            "passthroughBehavior": "when_no_match",
            "responses": {
                # No response template: S3's body (the JSON the worker stored) passes as is.
                "default": {
                    "statusCode": "200",
                    "responseParameters": {
                        **_ORIGIN,
                        "method.response.header.Content-Type": (
                            "integration.response.header.Content-Type"
                        ),
                    },
                },
                # S3 answers 403 for a missing key when the role may not list the bucket
                # (it may not), 404 when it may: both are "no result" (a malformed id, 400).
                r"4\d{2}": _integration_response("404", error),
                r"5\d{2}": _integration_response(
                    "503", load_template("get_job_result.unavailable"), _RETRY
                ),
            },
        },
    }


LISTED_STATUSES = ["STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "SCHEDULED"]


def _query_parameter(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    """An optional one may be sent empty: the templates read `limit=` as no limit
    ($input.params('limit') is '' for both)."""
    empty = {} if required else {"allowEmptyValue": True}
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
        **empty,
    }


def list_jobs(targets: AwsTargets, api_key_required: bool) -> dict[str, Any]:
    """GET /jobs: one Query of the `by_status` index (one shard of a status) per request.

    No request validator: list_jobs.request/response check the parameters themselves, so a
    missing or unknown status is a 400 that lists the statuses (API Gateway's own check
    would answer a bare "Missing required request parameters")."""
    from tasks.ops.provision import LIST_INDEX, list_shard_names

    shards = list_shard_names(targets.list_shards)  # "0" by default: one partition
    listed = {
        "type": "object",
        "required": ["job_id", "status", "created_at"],
        "properties": {
            name: {"type": "string"}
            for name in (
                "job_id",
                "status",
                "task",
                "created_at",
                "updated_at",
                "submitted_at",
                "started_at",
                "finished_at",
            )
        },
    }
    return {
        "operationId": "list_jobs",
        "summary": "Jobs by status, newest first (follow next for more)",
        "tags": ["jobs"],
        "parameters": [
            _query_parameter(
                "status",
                {"type": "string", "enum": LISTED_STATUSES},
                "The jobs' status (PENDING jobs have no record)",
                required=True,
            ),
            _query_parameter(
                "task",
                {"type": "string", "pattern": f"^{TASK_FILTER_REGEX}$"},
                "Only this task's jobs (filtered after Limit: a page may be short, follow next)",
            ),
            _query_parameter(
                "since",
                {"type": "string", "pattern": f"^{SINCE_REGEX}$"},
                "Only jobs created since then: ISO-8601 UTC (2026-12-01T00:00:00Z or 2026-12-01)",
            ),
            _query_parameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                "Jobs per page",
            ),
            _query_parameter(
                "cursor",
                {"type": "string", "pattern": f"^({CURSOR_FORM_REGEX})$"},
                "The next of the previous page (opaque: one of this form that "
                "no page gave is a 400)",
            ),
        ],
        "responses": {
            "200": {
                "description": "A page of jobs, and the cursor of the next (or null)",
                "headers": _ORIGIN_HEADER,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["jobs", "next"],
                            "properties": {
                                "jobs": {"type": "array", "items": listed},
                                "next": {"type": "string", "nullable": True},
                            },
                        }
                    }
                },
            },
            "400": _error_response(
                "A missing or unknown status, a bad limit, task or since, or an invalid cursor"
            ),
            "403": _error_response("Missing or wrong API key"),
            **_retry_responses("The job table"),
        },
        **_security(api_key_required),
        "x-amazon-apigateway-integration": {
            "type": "aws",
            "httpMethod": "POST",
            "uri": f"arn:{targets.partition}:apigateway:{targets.region}:dynamodb:action/Query",
            "credentials": targets.role_arn,
            "requestTemplates": {
                JSON: fill_template(
                    "list_jobs.request",
                    table_name=targets.table_name,
                    list_index=LIST_INDEX,
                    shards=shards,
                )
            },
            "passthroughBehavior": "never",
            "responses": {
                "default": _integration_response(
                    "200", fill_template("list_jobs.response", shards=shards)
                ),
                # DynamoDB's 400: throttling (429), a cursor outside the query's range
                # (400), else a deployment fault (502); the template tells them apart.
                r"4\d{2}": _integration_response("502", load_template("list_jobs.error")),
                r"5\d{2}": _integration_response(
                    "503", load_template("get_job.unavailable"), _RETRY
                ),
            },
        },
    }
