"""boto3 clients with the retry policy every part of the project shares.

Endpoint and credentials come from `Settings`, passed to each client explicitly:
nothing here reads or writes the process environment's AWS variables on its own.
"""

from __future__ import annotations

import functools
import os

import boto3
from botocore.config import Config

from tasks.ops.settings import Settings

# Standard retry mode backs off on throttling and 5xx; ten attempts ride out
# a short outage of the endpoint (about 10 s of capped exponential backoff).
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 10},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=20,
)

# For calls made from the worker's event loop (visibility beats, hand-backs): fail fast
# rather than stall the consumer; the next beat, or SQS's own timeout, covers a miss.
QUICK_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2},
    connect_timeout=1,
    read_timeout=3,
)


@functools.lru_cache(maxsize=32)
def _cached_client(
    service: str,
    region: str,
    endpoint: str | None,
    key: str | None,
    secret: str | None,
    pid: int,
    config: Config,
):
    # The pid is part of the key: a client must not be shared across a fork.
    session = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=region
    )
    return session.client(service, endpoint_url=endpoint, config=config)


def client(service: str, settings: Settings, endpoint: str | None, config: Config = RETRY_CONFIG):
    return _cached_client(
        service,
        settings.region,
        endpoint,
        settings.access_key_id,
        settings.secret_access_key,
        os.getpid(),
        config,
    )


def sqs_client(settings: Settings, *, quick: bool = False, config: Config | None = None):
    chosen = config or (QUICK_CONFIG if quick else RETRY_CONFIG)
    return client("sqs", settings, settings.sqs_endpoint, chosen)


# The job records' own client: every request it sends is built by tasks.results.records,
# so botocore's client-side parameter validation (the largest part of its CPU per write,
# measured by `make bench`) only repeats what DynamoDB checks anyway.
RECORDS_CONFIG = RETRY_CONFIG.merge(Config(parameter_validation=False))


def dynamodb_client(settings: Settings, *, validate: bool = True):
    config = RETRY_CONFIG if validate else RECORDS_CONFIG
    return client("dynamodb", settings, settings.dynamodb_endpoint, config)


# Path-style addressing: an emulator on 127.0.0.1 has no per-bucket host names.
# SigV4 always (the claim check's objects are read and written with it on AWS too).
S3_EMULATOR_CONFIG = RETRY_CONFIG.merge(
    Config(s3={"addressing_style": "path"}, signature_version="s3v4")
)
S3_CONFIG = RETRY_CONFIG.merge(Config(signature_version="s3v4"))


def s3_client(settings: Settings):
    """The bucket of large results and arguments (Settings.bucket_name)."""
    config = S3_EMULATOR_CONFIG if settings.s3_endpoint else S3_CONFIG
    return client("s3", settings, settings.s3_endpoint, config)


def scheduler_client(settings: Settings):
    """EventBridge Scheduler: deferred jobs' one-time schedules (tasks.ops.one_time_schedules)."""
    return client("scheduler", settings, settings.scheduler_endpoint)


def queue_url(settings: Settings) -> str:
    """The work queue's URL: from the settings when known, else asked of SQS once."""
    return (
        settings.derived_queue_url()
        or sqs_client(settings).get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    )


class QueueEntry(dict):
    """A kombu `predefined_queues` entry whose URL is asked of SQS when kombu first reads it.

    So importing the configuration makes no network call, even where JOBS_QUEUE_URL is not
    set and the URL cannot be derived (a Python service on AWS)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        url = settings.derived_queue_url()
        if url:
            self["url"] = url
        self._settings = settings

    def __missing__(self, key: str) -> str:
        if key != "url":
            raise KeyError(key)
        self["url"] = queue_url(self._settings)
        return self["url"]
