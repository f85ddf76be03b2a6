"""Sending a rendered integration request to SQS or DynamoDB, signed, as API Gateway does.

The integration's `uri` says where: `arn:<partition>:apigateway:<region>:sqs:path/<account>/<queue>`
is a POST to the queue's URL with the rendered body; `...:dynamodb:action/GetItem` is a
POST of the rendered JSON with `X-Amz-Target: DynamoDB_20120810.GetItem`;
`...:s3:path/<bucket>/<key>` (GET /jobs/{id}/result) is a GET of the object, path-style, its
body passed through. The request is signed with SigV4 from boto3's credentials, and endpoints
follow Settings (moto locally).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

import boto3
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session

from tasks.ops.settings import Settings

_URI = re.compile(
    r"^arn:[a-z-]+:apigateway:(?P<region>[^:]+):(?P<service>[^:]+):"
    r"(?P<kind>path|action)/(?P<rest>.+)$"
)
_JSON_TARGETS = {"dynamodb": "DynamoDB_20120810"}


@dataclass(frozen=True)
class IntegrationResponse:
    status: int
    body: str


class AwsIntegration:
    """One per process: a credentials provider and a connection pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # TCP_NODELAY as boto3's own clients set it: without it every call waits ~40 ms
        # for a delayed ACK (Nagle), which capped the shim near 240 requests/s.
        self.session = URLLib3Session(
            timeout=30, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        self.credentials = boto3.session.Session().get_credentials()

    def _endpoint(self, service: str, region: str) -> str:
        override = {
            "sqs": self.settings.sqs_endpoint,
            "dynamodb": self.settings.dynamodb_endpoint,
            "s3": self.settings.s3_endpoint,
        }.get(service)
        return (override or f"https://{service}.{region}.amazonaws.com").rstrip("/")

    def get_object(self, uri: str) -> IntegrationResponse:
        """An S3 `path/<bucket>/<key>` integration (the key's parameters filled in and
        URL-encoded already): a signed GET, path-style as API Gateway addresses S3."""
        match = _URI.match(uri)
        if not match or match["service"] != "s3" or match["kind"] != "path":
            raise ValueError(f"not an S3 path integration URI: {uri}")
        region = match["region"]
        request = AWSRequest(method="GET", url=f"{self._endpoint('s3', region)}/{match['rest']}")
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", region).add_auth(request)
        response = self.session.send(request.prepare())
        return IntegrationResponse(
            response.status_code, response.content.decode("utf-8", "replace")
        )

    def send(self, uri: str, body: str, headers: dict[str, str]) -> IntegrationResponse:
        match = _URI.match(uri)
        if not match:
            raise ValueError(f"not an AWS service integration URI: {uri}")
        region, service = match["region"], match["service"]
        base = self._endpoint(service, region)
        all_headers = dict(headers)
        if match["kind"] == "path":
            url = f"{base}/{match['rest']}"
        else:
            url = f"{base}/"
            all_headers["X-Amz-Target"] = f"{_JSON_TARGETS[service]}.{match['rest']}"
            all_headers.setdefault("Content-Type", "application/x-amz-json-1.0")
        request = AWSRequest(method="POST", url=url, data=body.encode("utf-8"), headers=all_headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), service, region).add_auth(request)
        response = self.session.send(request.prepare())
        return IntegrationResponse(
            response.status_code, response.content.decode("utf-8", "replace")
        )
