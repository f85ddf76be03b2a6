"""The HTTP API as an OpenAPI 3 document with API Gateway's extensions.

One document serves both worlds: `ecs` imports it into API Gateway (REST), and the shim
(api_shim) routes and renders from it. The caller passes the jobs it lists (the registry's
`all_jobs()`: name -> spec with name, schema, public, summary, expose): this package never
imports the registry, the app or the shim. The mapping templates are the files in
tasks/http_contract/templates; the few deployment names in them (`@TASK_NAME@`, `@QUEUE_NAME@`,
`@TABLE_NAME@`, `@MAX_BODY_BYTES@`, `@EXPOSED@`, `@RESULT_EXPIRES@`) are substituted here,
when the document is built, so the document is complete and needs no stage variables. The SQS
URI is built from the same queue name, so the message's routing_key always names the queue it
is sent to.

The routes' operations are tasks.http_contract.routes; the forms and names the document and
the templates share, tasks.http_contract.forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.http_contract.forms import (
    CORS_ALLOW_HEADERS,
    JSON,
    RETRY_AFTER_SECONDS,
    AwsTargets,
    model_name,
)
from tasks.http_contract.routes import (
    catalog,
    get_job,
    get_job_result,
    list_jobs,
    options,
    path_parameter,
    revoke_job,
    submit,
    unknown_task,
)

_JOB_SCHEMA = {
    "type": "object",
    "required": ["job_id", "status"],
    "properties": {
        "job_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "PENDING",
                "SCHEDULED",
                "STARTED",
                "PROGRESS",
                "RETRY",
                "SUCCESS",
                "FAILURE",
                "REVOKED",
            ],
        },
        "task": {"type": "string"},
        "result": {"description": "The task's return value, as JSON"},
        "result_url": {
            "type": "string",
            "description": (
                "Where a result too large for the record is read (GET /jobs/{job_id}/result), "
                "instead of `result`"
            ),
        },
        "result_bytes": {"type": "integer", "description": "That result's size in bytes"},
        "progress": {
            "type": "object",
            "properties": {
                "current": {"type": "integer"},
                "total": {"type": "integer"},
                "message": {"type": "string"},
            },
        },
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "module": {"type": "string"},
            },
        },
        "traceback": {"type": "string"},
        "attempts": {"type": "integer"},
        "retries": {"type": "integer"},
        "worker": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "submitted_at": {"type": "string", "format": "date-time"},
        "eta": {
            "type": "string",
            "format": "date-time",
            "description": "When the job is due (a countdown or eta): it never runs before",
        },
        "started_at": {"type": "string", "format": "date-time"},
        "revoked_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


GATEWAY_CORS = {
    "gatewayresponse.header.Access-Control-Allow-Origin": "'*'",
    "gatewayresponse.header.Access-Control-Allow-Headers": f"'{CORS_ALLOW_HEADERS}'",
}


def _gateway_responses() -> dict[str, Any]:
    """API Gateway's own errors as JSON {"message"}, with CORS, and the statuses we document.

    These templates are not Velocity: API Gateway substitutes `$context.error.*` only.
    """
    default = {JSON: '{"message": $context.error.messageString}'}

    def response(
        status: str | None = None,
        template: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "responseParameters": {**GATEWAY_CORS, **(headers or {})},
            "responseTemplates": template or default,
        }
        if status:
            out["statusCode"] = status
        return out

    return {
        "DEFAULT_4XX": response(),
        "DEFAULT_5XX": response(),
        "BAD_REQUEST_BODY": response("400"),
        "INVALID_API_KEY": response("403", {JSON: '{"message": "Forbidden"}'}),
        "UNSUPPORTED_MEDIA_TYPE": response(
            "415",
            {
                JSON: (
                    '{"message": "Unsupported Media Type: send the arguments as application/json"}'
                )
            },
        ),
        "REQUEST_TOO_LARGE": response("413"),
        # The stage's own throttling (usage plan, method settings): tell clients when to retry.
        "THROTTLED": response(
            "429", headers={"gatewayresponse.header.Retry-After": f"'{RETRY_AFTER_SECONDS}'"}
        ),
        # An unknown route or method: API Gateway says 403 "Missing Authentication Token".
        "MISSING_AUTHENTICATION_TOKEN": response("404", {JSON: '{"message": "Not Found"}'}),
    }


def build_openapi(
    targets: AwsTargets,
    all_jobs: Mapping[str, Any],
    *,
    title: str = "sqs-jobs",
    api_key_required: bool = False,
) -> dict:
    """The whole API for `all_jobs` (tasks.jobkit.registry.all_jobs()): the public ones get
    a route; every one's exposed fields are shown by GET and DELETE /jobs/{job_id}."""
    jobs = {name: spec for name, spec in sorted(all_jobs.items()) if spec.public}
    everyone = dict(sorted(all_jobs.items()))
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "JobAccepted": {
            "type": "object",
            "required": ["job_id", "status", "status_url"],
            "properties": {
                "job_id": {"type": "string"},
                "status": {"type": "string", "enum": ["PENDING"]},
                "status_url": {"type": "string"},
                # Delay-Seconds: when the job becomes due (the message's eta header).
                "eta": {"type": "string", "format": "date-time"},
            },
        },
        "Job": _JOB_SCHEMA,
        "Error": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        },
    }
    paths["/tasks"] = {"get": catalog(jobs, api_key_required), "options": options("GET,OPTIONS")}
    for name, spec in jobs.items():
        schemas[model_name(name)] = spec.schema
        paths[f"/tasks/{name}"] = {
            "post": submit(spec, targets, api_key_required),
            "options": options("POST,OPTIONS"),
        }
    paths["/tasks/{name}"] = {
        "post": unknown_task(api_key_required),
        "options": options("POST,OPTIONS", path_parameter("name")),
    }
    paths["/jobs"] = {
        "get": list_jobs(targets, api_key_required),
        "options": options("GET,OPTIONS"),
    }
    paths["/jobs/{job_id}"] = {
        "get": get_job(targets, everyone, api_key_required),
        "delete": revoke_job(targets, everyone, api_key_required),
        "options": options("GET,DELETE,OPTIONS", path_parameter("job_id")),
    }
    paths["/jobs/{job_id}/result"] = {
        "get": get_job_result(targets, api_key_required),
        "options": options("GET,OPTIONS", path_parameter("job_id")),
    }
    document: dict[str, Any] = {
        "openapi": "3.0.1",
        "info": {
            "title": title,
            "version": "1.0",
            "description": (
                "Submit jobs with POST /tasks/{name} (the body is the task's keyword "
                "arguments as a JSON object), read them with GET /jobs/{job_id} and cancel "
                "them with DELETE /jobs/{job_id}."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
        "x-amazon-apigateway-request-validators": {
            "body-and-params": {"validateRequestBody": True, "validateRequestParameters": True},
            "params-only": {"validateRequestBody": False, "validateRequestParameters": True},
        },
        "x-amazon-apigateway-gateway-responses": _gateway_responses(),
    }
    if api_key_required:
        document["components"]["securitySchemes"] = {
            "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}
        }
        document["x-amazon-apigateway-api-key-source"] = "HEADER"
    return document
