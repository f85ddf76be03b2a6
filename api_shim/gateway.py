"""API Gateway's request path, played from the OpenAPI document: the shim's core.

`Gateway.handle` does what API Gateway does with a request, in its order, reading every answer
from the document: the route (the most literal resource that matches, then the method; none:
the MISSING_AUTHENTICATION_TOKEN gateway response), the API key (INVALID_API_KEY), the content
type (UNSUPPORTED_MEDIA_TYPE when the integration has no template for it), request validation
against the model (BAD_REQUEST_BODY), then the integration: render the request template, send
it signed to SQS or DynamoDB (or, for a mock, take its status), pick the integration response
by status, render its template, and apply its response parameters and overrides. API
Gateway's own errors are rendered from `x-amazon-apigateway-gateway-responses`, CORS included.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft4Validator

from api_shim.integration import AwsIntegration, IntegrationResponse
from tasks.http_contract.forms import JSON, AwsTargets
from tasks.http_contract.openapi import build_openapi
from tasks.http_contract.routes import max_body_bytes
from tasks.http_contract.vtl import Params, render
from tasks.jobkit.registry import all_jobs, describe_errors
from tasks.ops.clients import queue_url
from tasks.ops.provision import MAX_MESSAGE_BYTES
from tasks.ops.settings import EMULATOR_ACCOUNT_ID, Settings

JSON_TYPE = JSON
# API Gateway's own payload limit (REQUEST_TOO_LARGE), checked before anything else.
GATEWAY_MAX_BYTES = 10 * 1024 * 1024
STAGE = "local"
# API Gateway's status and message for the gateway responses the shim can give.
RESPONSE_TYPES: dict[str, tuple[int, str]] = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error"),
}
# What SQS answers (query protocol) for a message over the queue's maximum size.
SQS_TOO_LONG = (
    '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">'
    "<Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>One or more "
    "parameters are invalid. Reason: Message must be shorter than {limit} bytes.</Message>"
    "<Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
)
_HEADER_PARAMETER = re.compile(
    r"^(method|gatewayresponse)\.response\.header\.(.+)$|"
    r"^gatewayresponse\.header\.(.+)$"
)


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        if isinstance(self.body, str):
            return self.body
        return json.dumps(self.body, ensure_ascii=False)


def targets_from_settings(settings: Settings) -> AwsTargets:
    """The shim's targets: the account is the one in the queue's URL."""
    path = urllib.parse.urlparse(queue_url(settings)).path.strip("/").split("/")
    account = path[0] if len(path) == 2 and path[0].isdigit() else EMULATOR_ACCOUNT_ID
    return AwsTargets(
        region=settings.region,
        account_id=account,
        queue_name=settings.queue_name,
        table_name=settings.table_name,
        role_arn=f"arn:aws:iam::{account}:role/api-shim-local",
        result_expires=settings.result_expires,
        bucket_name=settings.bucket_name,
        list_shards=settings.list_shards,
    )


def _request_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _static_headers(integration: dict[str, Any]) -> dict[str, str]:
    """`integration.request.header.X: 'literal'` entries, as API Gateway applies them."""
    headers = {}
    for key, value in integration.get("requestParameters", {}).items():
        prefix = "integration.request.header."
        if key.startswith(prefix) and value.startswith("'") and value.endswith("'"):
            headers[key[len(prefix) :]] = value[1:-1]
    return headers


def response_headers(parameters: dict[str, str]) -> dict[str, str]:
    """The literal (`'value'`) header mappings of an integration or gateway response."""
    headers = {}
    for key, value in parameters.items():
        match = _HEADER_PARAMETER.match(key)
        if match and value.startswith("'") and value.endswith("'"):
            headers[match[2] or match[3]] = value[1:-1]
    return headers


def select_response(responses: dict[str, Any], status: int) -> dict[str, Any]:
    """The integration response whose selection pattern matches the status, else default."""
    for pattern, spec in responses.items():
        if pattern != "default" and re.fullmatch(pattern, str(status)):
            return spec
    return responses["default"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but no double holds it: Python reads inf, which JSON cannot carry back.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


@dataclass
class Incoming:
    """What the shim needs of an HTTP request (kept apart from Flask for the tests).

    `path` is the decoded path ($context.path); `raw_path`, when known, is the path as sent,
    whose segments are decoded one by one as API Gateway matches them to resources.
    """

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    source_ip: str = "127.0.0.1"
    raw_path: str | None = None

    def header(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        return lowered.get(name.lower())

    def segments(self) -> list[str]:
        if self.raw_path is not None:
            raw = self.raw_path.split("?", 1)[0]
            return [urllib.parse.unquote(s) for s in raw.split("/")[1:]]
        return self.path.split("/")[1:]


@dataclass
class Route:
    resource: str
    method: str
    operation: dict[str, Any]
    path_params: dict[str, str]


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets = targets_from_settings(settings)
        self.api_keys = frozenset(settings.api_keys)
        jobs = all_jobs()
        self.document = build_openapi(self.targets, jobs, api_key_required=bool(self.api_keys))
        self.jobs = {name: spec for name, spec in jobs.items() if spec.public}
        schemas = self.document["components"]["schemas"]
        self.validators = {name: Draft4Validator(schema) for name, schema in schemas.items()}
        # Resources by segment count; literal segments are preferred over {params}.
        self.resources = sorted(
            (path.split("/")[1:] for path in self.document["paths"]),
            key=lambda segments: [s.startswith("{") for s in segments],
        )
        self._integration: AwsIntegration | None = None
        # The body size that always fits one message, per task (what a 413 says).
        self.max_body = {
            name: max_body_bytes(
                self.operation(f"/tasks/{name}", "post")["x-amazon-apigateway-integration"][
                    "requestTemplates"
                ][JSON_TYPE]
            )
            for name in self.jobs
        }

    @property
    def integration(self) -> AwsIntegration:
        if self._integration is None:  # made lazily: after gunicorn's fork
            self._integration = AwsIntegration(self.settings)
        return self._integration

    def operation(self, resource: str, method: str) -> dict[str, Any]:
        return self.document["paths"][resource][method]

    # --- the context API Gateway gives templates ----------------------------------------
    def context(
        self, incoming: Incoming, resource: str, request_id: str | None = None
    ) -> dict[str, Any]:
        now = time.time()
        return {
            "requestId": request_id or str(uuid.uuid4()),
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTimeEpoch": int(now * 1000),
            "requestTime": _request_time(now),
            "stage": STAGE,
            "resourcePath": resource,
            "path": incoming.path,
            "httpMethod": incoming.method,
            "apiId": "local",
            "accountId": self.targets.account_id,
            "domainName": incoming.header("host") or "localhost",
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": incoming.source_ip,
                "userAgent": incoming.header("user-agent") or "",
                "apiKey": incoming.header("x-api-key") or "",
            },
        }

    # --- API Gateway's own answers ------------------------------------------------------
    def gateway_response(
        self, kind: str, *, status: int | None = None, message: str | None = None, **extra: Any
    ) -> Reply:
        """A gateway response as the document configures it (DEFAULT_4XX/5XX otherwise).

        Its template is not Velocity: only `$context.error.*` is substituted. `extra` adds
        fields the shim alone gives (the validator's messages of a 400).
        """
        default_status, default_message = RESPONSE_TYPES.get(
            kind, (status or 500, message or "Error")
        )
        responses = self.document.get("x-amazon-apigateway-gateway-responses", {})
        status = status or default_status
        spec = responses.get(kind) or responses.get(
            "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX", {}
        )
        status = int(spec.get("statusCode", status))
        template = spec.get("responseTemplates", {}).get(
            JSON_TYPE, '{"message": $context.error.messageString}'
        )
        text = message or default_message
        for name, value in (
            ("messageString", json.dumps(text)),
            ("message", text),
            ("responseType", kind),
        ):
            template = template.replace(f"$context.error.{name}", value)
        body: dict[str, Any] | str = template
        if extra:
            body = {**json.loads(template), **extra}
        return Reply(status, body, response_headers(spec.get("responseParameters", {})))

    # --- routing --------------------------------------------------------------------------
    def resolve(self, incoming: Incoming) -> Route | None:
        """The resource API Gateway would pick (literal segments first), and its method."""
        segments = incoming.segments()
        for resource in self.resources:
            if len(resource) != len(segments):
                continue
            params = {}
            for pattern, segment in zip(resource, segments, strict=True):
                if pattern.startswith("{") and pattern.endswith("}"):
                    if not segment:
                        break
                    params[pattern[1:-1]] = segment
                elif pattern != segment:
                    break
            else:
                path = "/" + "/".join(resource)
                operation = self.document["paths"][path].get(incoming.method.lower())
                return (
                    Route(path, incoming.method.lower(), operation, params) if operation else None
                )
        return None

    def handle(self, incoming: Incoming) -> Reply:
        """One request, checked and answered in API Gateway's order."""
        route = self.resolve(incoming)
        if route is None:
            return self.gateway_response("MISSING_AUTHENTICATION_TOKEN")
        operation = route.operation
        if (
            operation.get("security")
            and self.api_keys
            and incoming.header("x-api-key") not in self.api_keys
        ):
            return self.gateway_response("INVALID_API_KEY")
        integration = operation["x-amazon-apigateway-integration"]
        params = Params(
            path=route.path_params, querystring=dict(incoming.query), header=dict(incoming.headers)
        )
        if integration["type"] == "mock":
            return self._mock(incoming, route, params)
        content_type = self.content_type(incoming)
        if integration.get(
            "passthroughBehavior"
        ) == "never" and content_type not in integration.get("requestTemplates", {}):
            return self.gateway_response("UNSUPPORTED_MEDIA_TYPE")
        problems = self._validate(operation, content_type, incoming.body)
        if problems:
            return self.gateway_response("BAD_REQUEST_BODY", errors=problems)
        return self._integrate(incoming, route, params)

    @staticmethod
    def content_type(incoming: Incoming) -> str:
        # API Gateway takes a request without Content-Type as application/json.
        raw = incoming.header("content-type")
        return JSON_TYPE if raw is None else raw.split(";")[0].strip().lower()

    def _validate(self, operation: dict[str, Any], content_type: str, raw: bytes) -> list[str]:
        """The request validator's body check against the model (JSON Schema draft 4)."""
        name = operation.get("x-amazon-apigateway-request-validator")
        validator = self.document.get("x-amazon-apigateway-request-validators", {}).get(name)
        media = operation.get("requestBody", {}).get("content", {}).get(content_type)
        if not (validator and validator.get("validateRequestBody") and media):
            return []
        model = media["schema"]["$ref"].rsplit("/", 1)[-1]
        try:
            value = json.loads(
                raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
            )
        except (UnicodeDecodeError, ValueError) as exc:
            return [f"(body): not valid JSON: {exc}"]
        except RecursionError:
            return ["(body): JSON nested too deeply"]
        # jsonschema quotes the offending value: keep each reason short (a body may be 10 MB).
        return [
            f"{_shorten(p)} (model {model})" for p in describe_errors(self.validators[model], value)
        ]

    # --- integrations -------------------------------------------------------------------
    def _answer(
        self, chosen: dict[str, Any], body: str, params: Params, context: dict[str, Any]
    ) -> Reply:
        if JSON_TYPE not in chosen.get("responseTemplates", {}):
            # No template: API Gateway passes the integration's body through (S3's object).
            return Reply(
                int(chosen["statusCode"]),
                body,
                response_headers(chosen.get("responseParameters", {})),
            )
        reply = render(
            chosen["responseTemplates"][JSON_TYPE], body=body, params=params, context=context
        )
        headers = {
            **response_headers(chosen.get("responseParameters", {})),
            **reply.header_overrides,
        }
        return Reply(reply.status_override or int(chosen["statusCode"]), reply.text, headers)

    def _mock(self, incoming: Incoming, route: Route, params: Params) -> Reply:
        """A mock integration: its request template says the status that picks the response."""
        integration = route.operation["x-amazon-apigateway-integration"]
        context = self.context(incoming, route.resource)
        request = render(
            integration["requestTemplates"][JSON_TYPE], body="", params=params, context=context
        )
        status = int(json.loads(request.text).get("statusCode", 200))
        chosen = select_response(integration["responses"], status)
        return self._answer(chosen, "", params, context)

    def _integrate(self, incoming: Incoming, route: Route, params: Params) -> Reply:
        integration = route.operation["x-amazon-apigateway-integration"]
        context = self.context(incoming, route.resource)
        if ":s3:path/" in integration["uri"]:  # GET /jobs/{id}/result: no request template
            answer = self.integration.get_object(_path_uri(integration, route.path_params))
            chosen = select_response(integration["responses"], answer.status)
            return self._answer(chosen, answer.body, params, context)
        body = incoming.body.decode("utf-8")
        if ":sqs:" in integration["uri"] and _never_fits(len(incoming.body)):
            answer = _sqs_too_long(context["requestId"])  # not worth rendering 10 MB
        else:
            request = render(
                integration["requestTemplates"][JSON_TYPE],
                body=body,
                params=params,
                context=context,
            )
            if ":sqs:" in integration["uri"] and _message_bytes(request.text) > MAX_MESSAGE_BYTES:
                # SQS's own check, made here as SQS makes it: the message's size.
                answer = _sqs_too_long(context["requestId"])
            else:
                answer = self.integration.send(
                    integration["uri"], request.text, _static_headers(integration)
                )
        chosen = select_response(integration["responses"], answer.status)
        return self._answer(chosen, answer.body, params, context)


def _path_uri(integration: dict[str, Any], path_params: dict[str, str]) -> str:
    """The URI with its `{name}`s filled from `integration.request.path.<name>` mappings
    (`method.request.path.<param>`), each URL-encoded whole, as API Gateway does."""
    uri = integration["uri"]
    prefix, source = "integration.request.path.", "method.request.path."
    for key, value in integration.get("requestParameters", {}).items():
        if key.startswith(prefix) and value.startswith(source):
            given = path_params.get(value[len(source) :], "")
            uri = uri.replace("{" + key[len(prefix) :] + "}", urllib.parse.quote(given, safe=""))
    return uri


def _shorten(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _never_fits(body_bytes: int) -> bool:
    # The message is base64 of an envelope holding base64 of the body: >= 16/9 of the body.
    return body_bytes * 16 > MAX_MESSAGE_BYTES * 9


def _message_bytes(form: str) -> int:
    fields = urllib.parse.parse_qs(form, keep_blank_values=True)
    return len(fields.get("MessageBody", [""])[0].encode("utf-8"))


def _sqs_too_long(request_id: str) -> IntegrationResponse:
    return IntegrationResponse(
        400, SQS_TOO_LONG.format(limit=MAX_MESSAGE_BYTES, request_id=request_id)
    )
