"""What the deployed API answers, read from the OpenAPI document alone (no shim code).

API Gateway chooses an integration response by matching the integration's HTTP status against
the selection patterns, renders its template with Velocity 1.7, then applies the response's
`method.response.header.*` literals and the template's `$context.responseOverride`. Gateway
responses (API Gateway's own errors) come from `x-amazon-apigateway-gateway-responses`, with
only `$context.error.*` substituted. This module does that from the document, rendering
templates with Apache Velocity 1.7 (Debian's `velocity`) when it is installed, so that tests
can compare the shim's answers with the deployed definition's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

VELOCITY_JARS = [
    Path("/usr/share/java/velocity.jar"),
    Path("/usr/share/java/commons-lang.jar"),
    Path("/usr/share/java/commons-collections3.jar"),
]
HARNESS = Path(__file__).resolve().parent / "velocity" / "RenderTemplate.java"
JSON = "application/json"
# API Gateway's default status and message for the gateway response types used here.
DEFAULTS = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "THROTTLED": (429, "Too Many Requests"),
}


@dataclass
class Rendered:
    text: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    template: str
    body: str = ""
    request_id: str = "r"
    path: str = "/"
    resource: str = "/"
    job_id: str | None = None
    # $context.requestTimeEpoch (a number, as on API Gateway) and $context.requestTime
    request_time_epoch: int | None = None
    request_time: str = ""
    query: dict[str, str] = field(default_factory=dict)  # $input.params' query string


def velocity_available() -> bool:
    return bool(shutil.which("javac")) and all(p.exists() for p in VELOCITY_JARS)


class Velocity:
    """Apache Velocity 1.7 through tests/velocity/RenderTemplate.java, one JVM per batch."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.classpath = ":".join(str(p) for p in VELOCITY_JARS)
        subprocess.run(
            ["javac", "-cp", self.classpath, "-d", str(workdir), str(HARNESS)], check=True
        )
        self._batches = 0

    def render_many(self, cases: list[Case]) -> list[Rendered]:
        self._batches += 1
        batch = self.workdir / f"batch{self._batches}"
        batch.mkdir()
        for i, case in enumerate(cases):
            (batch / f"{i}.template").write_text(case.template, encoding="utf-8")
            (batch / f"{i}.body").write_text(case.body, encoding="utf-8")
            (batch / f"{i}.args").write_text(
                "\n".join(
                    [
                        case.request_id,
                        case.path,
                        case.resource,
                        case.job_id or "",
                        "" if case.request_time_epoch is None else str(case.request_time_epoch),
                        case.request_time,
                        *(f"{k}={v}" for k, v in case.query.items()),
                    ]
                ),
                encoding="utf-8",
            )
        subprocess.run(
            [
                "java",
                "-cp",
                f"{self.workdir}:{self.classpath}",
                "RenderTemplate",
                "--batch",
                str(batch),
                str(len(cases)),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return [
            parse_overrides(
                (batch / f"{i}.out").read_text(encoding="utf-8"),
                (batch / f"{i}.err").read_text(encoding="utf-8"),
            )
            for i in range(len(cases))
        ]

    def render(self, template: str, **kw) -> Rendered:
        return self.render_many([Case(template, **kw)])[0]


def parse_overrides(text: str, overrides: str) -> Rendered:
    out = Rendered(text)
    for line in overrides.splitlines():
        if line.startswith("status="):
            out.status = int(line[len("status=") :])
        elif line.startswith("header:"):
            name, _, value = line[len("header:") :].partition("=")
            out.headers[name] = value
    return out


def shim_engine(case: Case) -> Rendered:
    """The shim's engine (airspeed-ext with tasks.http_contract.vtl's $input/$util/$context)."""
    from tasks.http_contract.vtl import Params, render

    times = (
        {}
        if case.request_time_epoch is None
        else {"requestTimeEpoch": case.request_time_epoch, "requestTime": case.request_time}
    )
    out = render(
        case.template,
        body=case.body,
        params=Params(
            path={"job_id": case.job_id} if case.job_id else {}, querystring=dict(case.query)
        ),
        context={
            "requestId": case.request_id,
            "path": case.path,
            "resourcePath": case.resource,
            **times,
        },
    )
    return Rendered(out.text, out.status_override, out.header_overrides)


# --- the deployed definition ---------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


def literal_headers(parameters: dict[str, str], prefix: str) -> dict[str, str]:
    return {
        key[len(prefix) :]: value.strip("'")
        for key, value in parameters.items()
        if key.startswith(prefix) and value.startswith("'")
    }


def resolve(doc: dict, method: str, path: str) -> str | None:
    """The resource API Gateway routes a request to: of those the path's segments match
    (a `{param}` takes one non-empty segment), the one with literal segments first; None when
    there is none or it lacks the method (API Gateway's MISSING_AUTHENTICATION_TOKEN)."""
    segments = [urllib.parse.unquote(s) for s in path.split("?")[0].split("/")[1:]]
    matches = []
    for resource in doc["paths"]:
        parts = resource.split("/")[1:]
        if len(parts) == len(segments) and all(
            (p.startswith("{") and s != "") or p == s for p, s in zip(parts, segments, strict=True)
        ):
            matches.append((tuple(p.startswith("{") for p in parts), resource))
    if not matches:
        return None
    resource = min(matches)[1]
    return resource if method.lower() in doc["paths"][resource] else None


def integration(doc: dict, resource: str, method: str) -> dict:
    return doc["paths"][resource][method]["x-amazon-apigateway-integration"]


def chosen_response(doc: dict, resource: str, method: str, status: int) -> dict:
    responses = integration(doc, resource, method)["responses"]
    matching = [
        spec
        for pattern, spec in responses.items()
        if pattern != "default" and re.fullmatch(pattern, str(status))
    ]
    assert len(matching) <= 1, f"{resource} {method}: selection patterns overlap at {status}"
    return matching[0] if matching else responses["default"]


def integration_answer(
    doc: dict, resource: str, method: str, status: int, body: str, rendered: Rendered
) -> Answer:
    """The method response for an integration answer, given its template's rendering."""
    spec = chosen_response(doc, resource, method, status)
    headers = literal_headers(spec.get("responseParameters", {}), "method.response.header.")
    headers.update(rendered.headers)
    final = rendered.status or int(spec["statusCode"])
    declared = doc["paths"][resource][method]["responses"]
    assert str(final) in declared, f"{resource} {method}: {final} is not a method response"
    for name in headers:
        assert name in declared[str(final)].get("headers", {}), (
            f"{resource} {method} {final}: header {name} not declared"
        )
    return Answer(final, headers, rendered.text)


def response_template(doc: dict, resource: str, method: str, status: int) -> str:
    return chosen_response(doc, resource, method, status)["responseTemplates"][JSON]


def gateway_answer(doc: dict, kind: str) -> Answer:
    """A gateway response as deployed: its own entry, else DEFAULT_4XX/DEFAULT_5XX."""
    status, message = DEFAULTS[kind]
    responses = doc["x-amazon-apigateway-gateway-responses"]
    spec = responses.get(kind) or responses["DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"]
    template = spec["responseTemplates"][JSON]
    body = template.replace("$context.error.messageString", json.dumps(message)).replace(
        "$context.error.responseType", kind
    )
    return Answer(
        int(spec.get("statusCode", status)),
        literal_headers(spec.get("responseParameters", {}), "gatewayresponse.header."),
        body,
    )


def preflight_answer(doc: dict, resource: str) -> Answer:
    """OPTIONS: a mock integration; its request template's statusCode picks the response."""
    spec = integration(doc, resource, "options")
    status = json.loads(spec["requestTemplates"][JSON])["statusCode"]
    chosen = chosen_response(doc, resource, "options", status)
    return Answer(
        int(chosen["statusCode"]),
        literal_headers(chosen.get("responseParameters", {}), "method.response.header."),
        chosen["responseTemplates"][JSON],
    )
