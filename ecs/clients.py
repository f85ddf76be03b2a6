"""boto3 clients for one region, made on first use, with one retry policy."""

from __future__ import annotations

import functools

import boto3
from botocore.config import Config

# Standard mode backs off on throttling (API Gateway's TooManyRequestsException included).
RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, read_timeout=60)


class Clients:
    def __init__(
        self,
        region: str,
        session: boto3.session.Session | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.region = region
        self._session = session or boto3.session.Session()
        self._endpoint = endpoint_url  # an emulator, in tests

    @functools.cache  # noqa: B019 - one Clients per command; the cache dies with it
    def get(self, service: str):
        return self._session.client(
            service, region_name=self.region, config=RETRY_CONFIG, endpoint_url=self._endpoint
        )

    @functools.cached_property
    def _identity(self) -> dict:
        return self.get("sts").get_caller_identity()

    def account_id(self) -> str:
        return self._identity["Account"]

    def partition(self) -> str:
        """aws, aws-cn or aws-us-gov: the caller's own ARN says which."""
        return self._identity["Arn"].split(":")[1]

    def __getattr__(self, service: str):
        # clients.ecs, clients.iam, clients.apigateway ...
        if service.startswith("_"):
            raise AttributeError(service)
        return self.get(service.replace("_", "-"))
