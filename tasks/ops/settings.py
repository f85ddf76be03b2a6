"""Deployment settings read from the environment, shared by the worker, the shim and `ecs`.

Every value has a local default so that `make run` works with no configuration.
Endpoints follow boto3's own variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS,
AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3), so the same code talks to AWS, moto or
LocalStack.

JOBS_TARGET chooses what an unset endpoint means. `aws` (the default): boto3's
usual resolution of endpoint and credentials, nothing assumed. `local` (`make
run`, the tests): the emulator on 127.0.0.1:4566, with dummy credentials unless
AWS_ACCESS_KEY_ID is set.

Settings are read, never written: the environment of the process is left as it
was. The project's own clients (tasks.ops.clients, the kombu channel) are given
their endpoint and credentials from here explicitly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

# moto's (and LocalStack's) default account: queue URLs on an emulator use it.
EMULATOR_ACCOUNT_ID = "123456789012"
LOCAL_ENDPOINT = "http://127.0.0.1:4566"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _endpoint(service: str, local: bool) -> str | None:
    explicit = os.environ.get(f"AWS_ENDPOINT_URL_{service}") or os.environ.get("AWS_ENDPOINT_URL")
    return explicit or (LOCAL_ENDPOINT if local else None)


def default_bucket_name(table_name: str, suffix: str = "payloads") -> str:
    """`<table>-<suffix>` as a valid S3 name (lowercase letters, digits, hyphens, 3-63).

    Good for an emulator; S3 names are global on AWS, so `ecs deploy` adds the account and
    region (ecs.stack) and hands the name to the worker in JOBS_BUCKET."""
    base = re.sub(r"[^a-z0-9-]+", "-", table_name.lower()).strip("-") or "jobs"
    return f"{base[:62 - len(suffix)].rstrip('-')}-{suffix}"


def _modules(raw: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in raw.split(",") if m.strip())


@dataclass(frozen=True)
class Settings:
    region: str = "us-east-1"
    queue_name: str = "jobs"
    queue_url: str | None = None
    dlq_name: str = "jobs-dlq"
    table_name: str = "jobs"
    sqs_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    # Results and arguments too large for a record or a message (JOBS_BUCKET; the claim
    # check, tasks.results.large_objects). `ecs deploy` names it uniquely on AWS.
    bucket_name: str = "jobs-payloads"
    s3_endpoint: str | None = None
    visibility_timeout: int = 300
    max_receive_count: int = 5
    result_expires: int = 7 * 24 * 3600
    concurrency: int = 2
    wait_time_seconds: int = 10
    heartbeat_file: str = "/tmp/worker-heartbeat"
    # Seconds a warm shutdown may take before running jobs are handed back;
    # below ECS's stopTimeout (120 s) so the hand-back finishes before SIGKILL.
    shutdown_deadline: int = 100
    prefetch_multiplier: int = 1
    ack_flush_interval: float = 1.0
    api_keys: tuple[str, ...] = field(default_factory=tuple)
    target: str = "aws"
    # Explicit credentials for the emulator only; on AWS boto3 resolves its own.
    access_key_id: str | None = None
    secret_access_key: str | None = None
    # Job modules beyond tasks.JOB_MODULES (JOBS_EXTRA_MODULES, comma-separated): tests.
    extra_job_modules: tuple[str, ...] = field(default_factory=tuple)
    # Completion callbacks (tasks.callbacks): the HMAC key (no key: callbacks are
    # refused, never sent unsigned; repr=False keeps it out of logs), the allow-list of
    # hosts/CIDRs exempt from the private-address rule, and the retry bounds.
    callback_secret: str | None = field(default=None, repr=False)
    callback_allow: tuple[str, ...] = field(default_factory=tuple)
    callback_max_attempts: int = 10
    callback_backoff: float = 2.0  # seconds; full jitter over base * 2**attempt
    callback_max_delay: float = 300.0
    callback_deadline: int = 900  # seconds from the first attempt

    @property
    def local(self) -> bool:
        return self.target == "local"

    @classmethod
    def from_env(cls) -> Settings:
        queue_name = os.environ.get("JOBS_QUEUE_NAME", "jobs")
        target = os.environ.get("JOBS_TARGET", "aws").strip().lower() or "aws"
        if target not in ("aws", "local"):
            raise ValueError(f"JOBS_TARGET must be 'aws' or 'local', got {target!r}")
        local = target == "local"
        raw_keys = os.environ.get("JOBS_API_KEYS", "").split(",")
        keys = tuple(k.strip() for k in raw_keys if k.strip())
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return cls(
            region=region or "us-east-1",
            queue_name=queue_name,
            queue_url=os.environ.get("JOBS_QUEUE_URL") or None,
            dlq_name=os.environ.get("JOBS_DLQ_NAME", f"{queue_name}-dlq"),
            table_name=os.environ.get("JOBS_TABLE_NAME", "jobs"),
            sqs_endpoint=_endpoint("SQS", local),
            dynamodb_endpoint=_endpoint("DYNAMODB", local),
            bucket_name=os.environ.get("JOBS_BUCKET") or default_bucket_name(
                os.environ.get("JOBS_TABLE_NAME", "jobs")),
            s3_endpoint=_endpoint("S3", local),
            visibility_timeout=_env_int("JOBS_VISIBILITY_TIMEOUT", 300),
            max_receive_count=_env_int("JOBS_MAX_RECEIVE_COUNT", 5),
            result_expires=_env_int("JOBS_RESULT_EXPIRES", 7 * 24 * 3600),
            concurrency=_env_int("WORKER_CONCURRENCY", 2),
            wait_time_seconds=_env_int("JOBS_WAIT_TIME_SECONDS", 10),
            heartbeat_file=os.environ.get("WORKER_HEARTBEAT_FILE", "/tmp/worker-heartbeat"),
            shutdown_deadline=_env_int("WORKER_SHUTDOWN_DEADLINE", 100),
            prefetch_multiplier=_env_int("WORKER_PREFETCH_MULTIPLIER", 1),
            ack_flush_interval=float(os.environ.get("JOBS_ACK_FLUSH_INTERVAL", "1.0")),
            api_keys=keys,
            target=target,
            access_key_id=(os.environ.get("AWS_ACCESS_KEY_ID") or "testing") if local else None,
            secret_access_key=(os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing")
            if local else None,
            extra_job_modules=_modules(os.environ.get("JOBS_EXTRA_MODULES", "")),
            callback_secret=os.environ.get("JOBS_CALLBACK_SECRET") or None,
            callback_allow=_modules(os.environ.get("JOBS_CALLBACK_ALLOW", "")),
            callback_max_attempts=_env_int("JOBS_CALLBACK_MAX_ATTEMPTS", 10),
            callback_backoff=float(os.environ.get("JOBS_CALLBACK_BACKOFF") or 2.0),
            callback_max_delay=float(os.environ.get("JOBS_CALLBACK_MAX_DELAY") or 300.0),
            callback_deadline=_env_int("JOBS_CALLBACK_DEADLINE", 900),
        )

    def derived_queue_url(self) -> str | None:
        """The queue's URL where it is known without a network call, else None.

        JOBS_QUEUE_URL (the deployment sets it) wins; on an emulator the URL is
        `<endpoint>/<account>/<name>`. tasks.ops.clients.queue_url asks SQS otherwise.
        """
        if self.queue_url:
            return self.queue_url
        if self.sqs_endpoint:
            account = os.environ.get("AWS_ACCOUNT_ID", EMULATOR_ACCOUNT_ID)
            return f"{self.sqs_endpoint.rstrip('/')}/{account}/{self.queue_name}"
        return None
