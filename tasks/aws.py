"""boto3 clients with the retry policy every part of the project shares."""

from __future__ import annotations

import functools
import os

import boto3
from botocore.config import Config

from tasks.settings import Settings

# Standard retry mode backs off on throttling and 5xx; ten attempts ride out
# a short outage of the endpoint (about 10 s of capped exponential backoff).
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 10},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=20,
)


@functools.lru_cache(maxsize=16)
def _cached_client(service: str, region: str, endpoint: str | None, pid: int):
    # The pid is part of the key: a client must not be shared across a fork.
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint, config=RETRY_CONFIG
    )


def _client(service: str, region: str, endpoint: str | None):
    return _cached_client(service, region, endpoint, os.getpid())


def sqs_client(settings: Settings):
    return _client("sqs", settings.region, settings.sqs_endpoint)


def dynamodb_client(settings: Settings):
    return _client("dynamodb", settings.region, settings.dynamodb_endpoint)
