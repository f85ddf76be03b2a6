"""Every variable the project reads, parsed and checked in one place: `Settings`.

`Settings.from_env()` reads the environment once, at an entry point (the Celery app, the
shim's `create_app`, a command line); the result is passed down (`app.settings`), never
re-read. `Settings.to_env()` renders it back: `ecs deploy` gives the worker's task
definition that environment, so the contract is written once, here. Each field names its
variable, its meaning and its default (`variables()` lists them for the docs).

Endpoints follow boto3's own variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS,
AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_ECS), so the same code talks
to AWS, moto or LocalStack. JOBS_TARGET chooses what an unset endpoint means. `aws` (the
default): boto3's usual resolution of endpoint and credentials, nothing assumed. `local`
(`make run`, the tests): the emulator on 127.0.0.1:4566, with dummy credentials unless
AWS_ACCESS_KEY_ID is set.

Settings are read, never written: the environment of the process is left as it was. The
project's own clients (tasks.ops.clients, the kombu channel) are given their endpoint and
credentials from here explicitly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# moto's (and LocalStack's) default account: queue URLs on an emulator use it.
EMULATOR_ACCOUNT_ID = "123456789012"
LOCAL_ENDPOINT = "http://127.0.0.1:4566"
# The shipped jobs: the example, and what JOBS_MODULES means when unset.
DEFAULT_JOB_MODULES = ("tasks.text", "tasks.documents", "tasks.enrich", "tasks.debug")


def default_bucket_name(table_name: str, suffix: str = "payloads") -> str:
    """`<table>-<suffix>` as a valid S3 name (lowercase letters, digits, hyphens, 3-63).

    Good for an emulator; S3 names are global on AWS, so `ecs deploy` adds the account and
    region (ecs.stack) and hands the name to the worker in JOBS_BUCKET."""
    base = re.sub(r"[^a-z0-9-]+", "-", table_name.lower()).strip("-") or "jobs"
    return f"{base[: 62 - len(suffix)].rstrip('-')}-{suffix}"


def configured_region(env: Mapping[str, str] | None = None) -> str | None:
    """AWS_REGION, else AWS_DEFAULT_REGION, else None (`ecs` then asks boto3's config)."""
    env = os.environ if env is None else env
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


# --- parsers: each turns the variable's text into the field's value or says what is wrong
def _text(raw: str) -> str:
    return raw


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _number(
    kind: type, low: float | None = None, high: float | None = None
) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"must be {'an integer' if kind is int else 'a number'}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bounds}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be {' or '.join(repr(a) for a in allowed)}")
        return value

    return parse


def _switch(raw: str) -> bool:
    return _choice("on", "off")(raw) == "on"


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


@dataclass(frozen=True)
class Var:
    """How one field is read from the environment and written back."""

    name: str
    doc: str
    parse: Callable[[str], Any] = _text
    fallbacks: tuple[str, ...] = ()  # read, in order, when `name` is unset
    mirror: bool = False  # to_env() writes the fallbacks too (boto3 reads AWS_DEFAULT_REGION)
    task: bool = True  # part of the worker's task definition (to_env()); else shim/deploy/secret
    default_doc: str = ""  # the default in words, when it is derived


def var(default: Any, name: str, doc: str, **how: Any) -> Any:
    return field(default=default, metadata={"var": Var(name, doc, **how)})


def secret(name: str, doc: str, default: Any = None, **how: Any) -> Any:
    """Kept out of reprs (logs) and out of the task definition's environment."""
    return field(default=default, repr=False, metadata={"var": Var(name, doc, task=False, **how)})


def _endpoint(service: str) -> Any:
    return var(
        None,
        f"AWS_ENDPOINT_URL_{service.upper()}",
        f"{service} endpoint (boto3's variable); AWS_ENDPOINT_URL covers every service",
        fallbacks=("AWS_ENDPOINT_URL",),
        default_doc="boto3's resolution; the emulator when JOBS_TARGET=local",
    )


_INT = _number(int)
_SECONDS = _number(float, 0)


@dataclass(frozen=True)
class Settings:
    # --- where: AWS or an emulator
    target: str = var(
        "aws",
        "JOBS_TARGET",
        "`aws` or `local` (the emulator on 127.0.0.1:4566)",
        parse=_choice("aws", "local"),
    )
    region: str = var(
        "us-east-1",
        "AWS_REGION",
        "AWS region (AWS_DEFAULT_REGION is read too)",
        fallbacks=("AWS_DEFAULT_REGION",),
        mirror=True,
    )
    sqs_endpoint: str | None = _endpoint("SQS")
    dynamodb_endpoint: str | None = _endpoint("DynamoDB")
    s3_endpoint: str | None = _endpoint("S3")
    scheduler_endpoint: str | None = _endpoint("Scheduler")
    # Scale-in protection's deployment check; no emulator default (moto has no ECS agent).
    ecs_endpoint: str | None = var(
        None,
        "AWS_ENDPOINT_URL_ECS",
        "ECS endpoint (boto3's variable)",
        fallbacks=("AWS_ENDPOINT_URL",),
    )
    # Explicit credentials for the emulator only; on AWS boto3 resolves its own.
    access_key_id: str | None = secret(
        "AWS_ACCESS_KEY_ID",
        "emulator only (JOBS_TARGET=local)",
        default_doc="`testing` when local; else boto3's own",
    )
    secret_access_key: str | None = secret(
        "AWS_SECRET_ACCESS_KEY",
        "emulator only (JOBS_TARGET=local)",
        default_doc="`testing` when local; else boto3's own",
    )
    emulator_account_id: str = var(
        EMULATOR_ACCOUNT_ID,
        "AWS_ACCOUNT_ID",
        "account in queue URLs derived on an emulator",
        task=False,
    )

    # --- the stack's resources
    queue_name: str = var("jobs", "JOBS_QUEUE_NAME", "the work queue")
    queue_url: str | None = var(
        None,
        "JOBS_QUEUE_URL",
        "the work queue's URL",
        default_doc="derived on an emulator, else asked of SQS once",
    )
    dlq_name: str = var(
        "jobs-dlq", "JOBS_DLQ_NAME", "the dead-letter queue", default_doc="`<JOBS_QUEUE_NAME>-dlq`"
    )
    table_name: str = var("jobs", "JOBS_TABLE_NAME", "the DynamoDB table of job records")
    # Results and arguments too large for a record or a message (the claim check,
    # tasks.results.large_objects). `ecs deploy` names it uniquely on AWS.
    bucket_name: str = var(
        "jobs-payloads",
        "JOBS_BUCKET",
        "S3 bucket of large results and arguments",
        default_doc="`<JOBS_TABLE_NAME>-payloads`",
    )

    # --- the jobs
    job_modules: tuple[str, ...] = var(
        DEFAULT_JOB_MODULES,
        "JOBS_MODULES",
        "comma-separated job modules: registered by the "
        "worker, listed by the API, their schedules deployed",
        parse=_names,
    )
    extra_job_modules: tuple[str, ...] = var(
        (),
        "JOBS_EXTRA_MODULES",
        "more job modules, registered locally but never deployed "
        "(tests, the demo schedule of `make run`)",
        parse=_names,
        task=False,
    )

    # --- deferral: ETAs too far for SQS to hold (tasks.worker.deferral)
    defer_after: int = var(
        900,
        "JOBS_DEFER_AFTER",
        "a job received more than this many seconds before its ETA is deferred to a one-time "
        "EventBridge Scheduler schedule instead of held by a worker (900: SQS's longest delay)",
        parse=_number(int, 1, 39600),
    )
    schedule_group: str = var(
        "jobs-schedules",
        "JOBS_SCHEDULE_GROUP",
        "the stack's EventBridge Scheduler group (recurring and deferred jobs)",
    )
    scheduler_role_arn: str | None = var(
        None,
        "JOBS_SCHEDULER_ROLE_ARN",
        "the role schedules send to the queue with; unset on AWS: no deferral (ETAs are held "
        "by a worker up to 11 h, refused beyond)",
        default_doc="`arn:aws:iam::<AWS_ACCOUNT_ID>:role/jobs-scheduler` when local",
    )

    # --- delivery
    visibility_timeout: int = var(
        300,
        "JOBS_VISIBILITY_TIMEOUT",
        "SQS visibility timeout (seconds)",
        parse=_number(int, 0, 43200),
    )
    max_receive_count: int = var(
        5,
        "JOBS_MAX_RECEIVE_COUNT",
        "receives before a message goes to the DLQ",
        parse=_number(int, 1, 1000),
    )
    result_expires: int = var(
        7 * 24 * 3600, "JOBS_RESULT_EXPIRES", "seconds a job record is kept", parse=_number(int, 1)
    )
    wait_time_seconds: int = var(
        10, "JOBS_WAIT_TIME_SECONDS", "SQS long-poll wait (seconds)", parse=_number(int, 0, 20)
    )
    ack_flush_interval: float = var(
        1.0,
        "JOBS_ACK_FLUSH_INTERVAL",
        "seconds acknowledgements wait to be deleted in batches",
        parse=_SECONDS,
    )
    visibility_heartbeat: bool = var(
        True,
        "JOBS_VISIBILITY_HEARTBEAT",
        "`off` stops extending running jobs' visibility and leases",
        parse=_switch,
    )

    # --- the listing index (tasks.results.index_key; docs/job-record.md: its cost)
    list_shards: int = var(
        1,
        "JOBS_LIST_SHARDS",
        "partitions per status of the listing index: 1 makes a first page the newest jobs; "
        "more only above ~1,000 finished jobs/s of one status (the API and workers must agree)",
        parse=_number(int, 1, 16),
    )
    list_running_after: float = var(
        10.0,
        "JOBS_LIST_RUNNING_AFTER",
        "seconds a job runs before it is listed under STARTED (by its lease renewal); "
        "0 lists every running job at once, for 3 index write units a job instead of 1",
        parse=_SECONDS,
    )

    # --- the worker process
    concurrency: int = var(2, "WORKER_CONCURRENCY", "pool processes", parse=_number(int, 1))
    prefetch_multiplier: int = var(
        1, "WORKER_PREFETCH_MULTIPLIER", "Celery's prefetch multiplier", parse=_number(int, 0)
    )
    pool: str = var(
        "prefork",
        "WORKER_POOL",
        "Celery's pool: `prefork` keeps every guarantee; `threads` for I/O-bound jobs, "
        "without revoke's terminate nor the lost-process record (docs/operations.md)",
        parse=_choice("prefork", "threads", "solo"),
    )
    pool_nice: int = var(
        5,
        "WORKER_POOL_NICE",
        "steps of lower CPU priority (nice) for pool processes, so the consumer that feeds "
        "them runs first; 0: the consumer's priority",
        parse=_number(int, 0, 19),
    )
    # Seconds a warm shutdown may take before running jobs are handed back;
    # below ECS's stopTimeout (120 s) so the hand-back finishes before SIGKILL.
    shutdown_deadline: int = var(
        100,
        "WORKER_SHUTDOWN_DEADLINE",
        "seconds a warm shutdown waits before handing running jobs back",
        parse=_number(int, 0),
    )
    heartbeat_file: str = var(
        "/tmp/worker-heartbeat",
        "WORKER_HEARTBEAT_FILE",
        "the file the worker touches while it progresses",
    )
    heartbeat_max_age: float = var(
        45.0,
        "WORKER_HEARTBEAT_MAX_AGE",
        "seconds without progress before the health check fails",
        parse=_number(float, 1),
    )
    metrics: bool | None = var(
        None,
        "JOBS_METRICS",
        "`on`/`off`: CloudWatch EMF metrics in the logs",
        parse=_switch,
        default_doc="on on ECS, else off",
    )
    metrics_namespace: str = var(
        "sqs-jobs", "JOBS_METRICS_NAMESPACE", "CloudWatch namespace of the metrics"
    )
    wait_trace: str | None = var(
        None,
        "JOBS_WAIT_TRACE",
        "a file the worker appends where sampled jobs waited to (tasks.worker.job_waits, "
        "for the bench); none: off",
        task=False,  # the bench's, not the deployed worker's
    )
    wait_trace_every: int = var(
        1,
        "JOBS_WAIT_TRACE_EVERY",
        "trace one job in this many (by a hash of its id) when JOBS_WAIT_TRACE is set",
        parse=_number(int, 1),
        task=False,
    )

    # --- ECS (the agent sets the URIs; the protection knobs are for tests and tuning)
    ecs_agent_uri: str | None = var(
        None,
        "ECS_AGENT_URI",
        "set by ECS: scale-in protection is asked of the agent there",
        task=False,
    )
    ecs_metadata_uri: str | None = var(
        None,
        "ECS_CONTAINER_METADATA_URI_V4",
        "set by ECS: the task's identity (deployment check, metrics)",
        task=False,
    )
    protection_minutes: int | None = var(
        None,
        "ECS_PROTECTION_MINUTES",
        "minutes of each scale-in protection",
        parse=_number(int, 1),
        default_doc="visibility timeout in minutes + 2",
    )
    protection_max_window: float = var(
        1800.0,
        "ECS_PROTECTION_MAX_WINDOW",
        "seconds a busy task may stay protected at a stretch",
        parse=_SECONDS,
    )
    protection_cooldown: float = var(
        60.0,
        "ECS_PROTECTION_COOLDOWN",
        "seconds a drained task waits before taking messages again",
        parse=_SECONDS,
    )
    deployment_check_seconds: float = var(
        30.0,
        "ECS_DEPLOYMENT_CHECK_SECONDS",
        "seconds between checks for a newer deployment",
        parse=_number(float, 1),
    )

    # --- completion callbacks (tasks.callbacks): the HMAC key (no key: callbacks are
    # refused, never sent unsigned; kept out of reprs), the allow-list of hosts/CIDRs exempt
    # from the private-address rule, and the retry bounds.
    callback_secret: str | None = secret(
        "JOBS_CALLBACK_SECRET",
        "HMAC key of callbacks (ECS secret on AWS)",
        default_doc="none: refused",
    )
    callback_allow: tuple[str, ...] = var(
        (),
        "JOBS_CALLBACK_ALLOW",
        "hosts/CIDRs callbacks may reach despite the private-address rule",
        parse=_names,
    )
    callback_max_attempts: int = var(
        10, "JOBS_CALLBACK_MAX_ATTEMPTS", "delivery attempts", parse=_number(int, 1)
    )
    callback_backoff: float = var(
        2.0, "JOBS_CALLBACK_BACKOFF", "seconds; full jitter over base * 2**attempt", parse=_SECONDS
    )
    callback_max_delay: float = var(
        300.0, "JOBS_CALLBACK_MAX_DELAY", "longest wait between attempts (seconds)", parse=_SECONDS
    )
    callback_deadline: int = var(
        900,
        "JOBS_CALLBACK_DEADLINE",
        "seconds from the first attempt to giving up",
        parse=_number(int, 1),
    )

    # --- the HTTP shim and the deployer
    api_keys: tuple[str, ...] = secret(
        "JOBS_API_KEYS",
        "comma-separated keys the shim accepts in x-api-key",
        (),
        parse=_names,
        default_doc="none: no key asked",
    )
    shim_bind: str = var(
        "127.0.0.1:8000", "SHIM_BIND", "gunicorn's address for the shim", task=False
    )
    shim_workers: int = var(
        2, "SHIM_WORKERS", "gunicorn workers of the shim", parse=_number(int, 1), task=False
    )
    stack_name: str = var("sqs-jobs", "JOBS_STACK", "`ecs`'s default --stack", task=False)

    @property
    def local(self) -> bool:
        return self.target == "local"

    @property
    def all_job_modules(self) -> tuple[str, ...]:
        """What the worker imports: JOBS_MODULES, then JOBS_EXTRA_MODULES."""
        return tuple(dict.fromkeys((*self.job_modules, *self.extra_job_modules)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read (never write) `env`, os.environ by default; ValueError names the variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f, v in _vars():
            for name in (v.name, *v.fallbacks):
                raw = env.get(name)
                if raw:
                    try:
                        values[f.name] = v.parse(raw)
                    except ValueError as exc:
                        raise ValueError(f"{name} {exc}, got {raw!r}") from None
                    break
        # Defaults that follow from other values.
        local = values.get("target") == "local"
        values.setdefault("dlq_name", f"{values.get('queue_name', 'jobs')}-dlq")
        values.setdefault("bucket_name", default_bucket_name(values.get("table_name", "jobs")))
        if local:
            for name in ("sqs_endpoint", "dynamodb_endpoint", "s3_endpoint", "scheduler_endpoint"):
                values.setdefault(name, LOCAL_ENDPOINT)
            account = values.get("emulator_account_id", EMULATOR_ACCOUNT_ID)
            values.setdefault("scheduler_role_arn", f"arn:aws:iam::{account}:role/jobs-scheduler")
            values.setdefault("access_key_id", "testing")
            values.setdefault("secret_access_key", "testing")
        else:  # on AWS boto3 resolves credentials itself (roles, profiles, SSO)
            values.pop("access_key_id", None)
            values.pop("secret_access_key", None)
        return cls(**values)

    @classmethod
    def of(cls, app: Any) -> Settings:
        """The settings of a Celery app made by tasks.app_factory (`app.settings`); an app
        made otherwise (`config_from_object("celeryconfig")`) gets the environment's."""
        settings = getattr(app, "settings", None)
        return settings if isinstance(settings, Settings) else cls.from_env()

    def to_env(self, *, everything: bool = False) -> dict[str, str]:
        """The environment that reads back as these settings (`from_env(to_env())`).

        By default only what the worker's task definition carries: no secrets (the callback
        key goes in as an ECS secret), no shim, deployer or ECS-agent variables."""
        env: dict[str, str] = {}
        for f, v in _vars():
            value = getattr(self, f.name)
            if value is None or value == () or not (v.task or everything):
                continue  # unset reads back as None; an empty list as its default
            for name in (v.name, *(v.fallbacks if v.mirror else ())):
                env[name] = _render(value)
        return env

    def derived_queue_url(self) -> str | None:
        """The queue's URL where it is known without a network call, else None.

        JOBS_QUEUE_URL (the deployment sets it) wins; on an emulator the URL is
        `<endpoint>/<account>/<name>`. tasks.ops.clients.queue_url asks SQS otherwise.
        """
        if self.queue_url:
            return self.queue_url
        if self.sqs_endpoint:
            return f"{self.sqs_endpoint.rstrip('/')}/{self.emulator_account_id}/{self.queue_name}"
        return None


def _vars() -> Iterator[tuple[Any, Var]]:
    for f in fields(Settings):
        yield f, f.metadata["var"]


def variables() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting: the docs' configuration table."""
    rows = []
    for f, v in _vars():
        default = v.default_doc or (
            "none" if f.default in (None, ()) else f"`{_render(f.default)}`"
        )
        rows.append((v.name, default, v.doc))
    return rows


def variable_names() -> frozenset[str]:
    """Every environment variable Settings reads, fallbacks included."""
    return frozenset(n for _, v in _vars() for n in (v.name, *v.fallbacks))
