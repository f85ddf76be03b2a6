"""API Gateway's request path, played from the OpenAPI document: the shim's core.

For a route the document defines, `Gateway` does what API Gateway does, in its order:
API key (403), content type (415), body size (413), request validation against the model
(400), then the integration: render the request template, send it signed to SQS or
DynamoDB, pick the integration response by status, render its template.
"""

from __future__ import annotations

import base64
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

from api_shim.integration import AwsIntegration
from api_shim.openapi import AwsTargets, build_openapi, model_name
from api_shim.vtl import Params, render
from tasks.jobkit.registry import describe_errors, public_jobs
from tasks.ops.clients import queue_url
from tasks.ops.provision import MAX_MESSAGE_BYTES
from tasks.ops.settings import EMULATOR_ACCOUNT_ID, Settings

JSON_TYPE = "application/json"
# API Gateway's own payload limit; our per-task limit (far lower) is checked after it.
GATEWAY_MAX_BYTES = 10 * 1024 * 1024
STAGE = "local"
# Any body of up to this many UTF-16 units is copied into kwargsrepr, 6 bytes each at worst.
KWARGSREPR_MAX_CHARS = 1024 * 6
SAMPLE_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        if isinstance(self.body, str):
            return self.body
        return json.dumps(self.body, ensure_ascii=False)


def error(status: int, message: str, **detail: Any) -> Reply:
    return Reply(status, {"message": message, **detail})


def targets_from_settings(settings: Settings) -> AwsTargets:
    """The shim's targets: the account is the one in the queue's URL."""
    path = urllib.parse.urlparse(queue_url(settings)).path.strip("/").split("/")
    account = path[0] if len(path) == 2 and path[0].isdigit() else EMULATOR_ACCOUNT_ID
    return AwsTargets(region=settings.region, account_id=account,
                      queue_name=settings.queue_name, table_name=settings.table_name,
                      role_arn=f"arn:aws:iam::{account}:role/api-shim-local")


def _request_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _static_headers(integration: dict[str, Any]) -> dict[str, str]:
    """`integration.request.header.X: 'literal'` entries, as API Gateway applies them."""
    headers = {}
    for key, value in integration.get("requestParameters", {}).items():
        prefix = "integration.request.header."
        if key.startswith(prefix) and value.startswith("'") and value.endswith("'"):
            headers[key[len(prefix):]] = value[1:-1]
    return headers


def _select(responses: dict[str, Any], status: int) -> dict[str, Any]:
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
    """What the shim needs of an HTTP request (kept apart from Flask for the tests)."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    source_ip: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        return lowered.get(name.lower())


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets = targets_from_settings(settings)
        self.api_keys = frozenset(settings.api_keys)
        self.document = build_openapi(self.targets, api_key_required=bool(self.api_keys))
        self.jobs = public_jobs()
        self.validators = {name: Draft4Validator(spec.schema) for name, spec in self.jobs.items()}
        self._integration: AwsIntegration | None = None
        self.max_body = {name: self._max_body_bytes(name) for name in self.jobs}

    @property
    def integration(self) -> AwsIntegration:
        if self._integration is None:  # made lazily: after gunicorn's fork
            self._integration = AwsIntegration(self.settings)
        return self._integration

    def operation(self, resource: str, method: str) -> dict[str, Any]:
        return self.document["paths"][resource][method]

    # --- the context API Gateway gives templates ----------------------------------------
    def context(self, incoming: Incoming, resource: str, request_id: str | None = None
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
            "identity": {"sourceIp": incoming.source_ip,
                         "userAgent": incoming.header("user-agent") or "",
                         "apiKey": incoming.header("x-api-key") or ""},
        }

    # --- checks API Gateway makes before the integration --------------------------------
    def check_api_key(self, incoming: Incoming) -> Reply | None:
        if self.api_keys and incoming.header("x-api-key") not in self.api_keys:
            return error(403, "Forbidden")
        return None

    @staticmethod
    def is_json(incoming: Incoming) -> bool:
        # API Gateway takes a request without Content-Type as application/json.
        raw = incoming.header("content-type")
        return raw is None or raw.split(";")[0].strip().lower() == JSON_TYPE

    def _max_body_bytes(self, name: str) -> int:
        """The largest body whose message fits SQS's limit, whatever its characters.

        The message is base64(envelope), and the envelope holds base64([[], body, embed])
        plus at most KWARGSREPR_MAX_CHARS of kwargsrepr: measure the fixed parts once.
        """
        operation = self.operation(f"/tasks/{name}", "post")
        template = operation["x-amazon-apigateway-integration"]["requestTemplates"][JSON_TYPE]
        sample = render(template, body="{}", params=Params(),
                        context={"requestId": SAMPLE_ID}).text
        message = urllib.parse.parse_qs(sample)["MessageBody"][0]
        envelope = json.loads(base64.b64decode(message))
        inner_b64 = envelope["body"]
        inner_overhead = len(base64.b64decode(inner_b64)) - len("{}")
        fixed = len(base64.b64decode(message)) - len(inner_b64) - len(
            envelope["headers"]["kwargsrepr"])
        envelope_max = (MAX_MESSAGE_BYTES // 4) * 3
        inner_b64_max = envelope_max - fixed - KWARGSREPR_MAX_CHARS
        return (inner_b64_max // 4) * 3 - inner_overhead

    # --- routes -------------------------------------------------------------------------
    def _mock(self, incoming: Incoming, resource: str, method: str, params: Params) -> Reply:
        """A mock integration: only its (default) response template is rendered."""
        integration = self.operation(resource, method)["x-amazon-apigateway-integration"]
        chosen = integration["responses"]["default"]
        reply = render(chosen["responseTemplates"][JSON_TYPE], body="", params=params,
                       context=self.context(incoming, resource))
        return Reply(reply.status_override or int(chosen["statusCode"]), reply.text,
                     reply.header_overrides)

    def list_tasks(self, incoming: Incoming) -> Reply:
        denied = self.check_api_key(incoming)
        if denied:
            return denied
        return self._mock(incoming, "/tasks", "get", Params())

    def submit(self, incoming: Incoming, name: str) -> Reply:
        denied = self.check_api_key(incoming)
        if denied:
            return denied
        if name not in self.jobs:
            return self._mock(incoming, "/tasks/{name}", "post", Params(path={"name": name}))
        if not self.is_json(incoming):
            return error(415, "Unsupported Media Type: send the arguments as application/json")
        limit = self.max_body[name]
        if len(incoming.body) > limit:
            return error(413, f"Request body too large: {len(incoming.body)} bytes, at most "
                              f"{limit} for this task (one SQS message holds 1 MiB)")
        problems = self._validate(name, incoming.body)
        if problems:
            return error(400, "Invalid request body", errors=problems)
        resource = f"/tasks/{name}"
        return self._integrate(incoming, resource, self.operation(resource, "post"),
                               body=incoming.body.decode("utf-8"), params=Params())

    def _validate(self, name: str, raw: bytes) -> list[str]:
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                               parse_float=_finite_float)
        except (UnicodeDecodeError, ValueError) as exc:
            return [f"(body): not valid JSON: {exc}"]
        except RecursionError:
            return ["(body): JSON nested too deeply"]
        model = model_name(name)
        return [f"{p} (model {model})" for p in describe_errors(self.validators[name], value)]

    def get_job(self, incoming: Incoming, job_id: str) -> Reply:
        denied = self.check_api_key(incoming)
        if denied:
            return denied
        return self._integrate(incoming, "/jobs/{job_id}", self.operation("/jobs/{job_id}",
                                                                          "get"),
                               body="", params=Params(path={"job_id": job_id},
                                                      querystring=dict(incoming.query),
                                                      header=dict(incoming.headers)))

    def _integrate(self, incoming: Incoming, resource: str, operation: dict[str, Any], *,
                   body: str, params: Params) -> Reply:
        integration = operation["x-amazon-apigateway-integration"]
        context = self.context(incoming, resource)
        request = render(integration["requestTemplates"][JSON_TYPE], body=body, params=params,
                         context=context)
        answer = self.integration.send(integration["uri"], request.text,
                                       _static_headers(integration))
        chosen = _select(integration["responses"], answer.status)
        reply = render(chosen["responseTemplates"][JSON_TYPE], body=answer.body, params=params,
                       context=context)
        status = reply.status_override or int(chosen["statusCode"])
        return Reply(status, reply.text, reply.header_overrides)
