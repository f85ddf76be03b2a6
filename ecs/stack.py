"""The desired state of one stack: every resource's name, ARN and tags, from the config."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tasks.ops.settings import DEFAULT_JOB_MODULES, Settings

APP_TAG = "sqs-jobs"
DEFAULT_STACK = "sqs-jobs"
STAGE = "v1"
SERVICE = "worker"
CONTAINER = "worker"
# Seconds between SIGTERM and SIGKILL (Celery's warm shutdown); the worker hands running
# jobs back 20 s before that (WORKER_SHUTDOWN_DEADLINE).
STOP_TIMEOUT = 120
# ECS's startedBy (at most 36 characters) of the task `deploy` runs as a smoke check.
SMOKE_STARTED_BY = "deploy-smoke-check"


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to (ARNs and service principals depend on it)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def default_stack_name() -> str:
    return Settings.from_env().stack_name  # JOBS_STACK, else DEFAULT_STACK


@dataclass(frozen=True)
class Options:
    """What the command line may change; every field has a sensible default."""

    image: str | None = None
    cpu: int = 512
    memory: int = 1024
    architecture: str = "X86_64"
    concurrency: int = 2
    subnets: tuple[str, ...] = ()
    enable_exec: bool = False
    min_tasks: int = 0
    max_tasks: int = 10
    acceptable_latency: float = 300.0
    seconds_per_job: float = 2.0
    log_retention_days: int = 14
    visibility_timeout: int = 300
    max_receive_count: int = 5
    # The listing index's partitions a status (JOBS_LIST_SHARDS: docs/job-record.md); the
    # workers and the API are given the same.
    list_shards: int = 1
    throttle_rate: float = 50.0
    throttle_burst: int = 100
    spot: bool = True
    # Seconds `deploy` waits for the service to be stable, and for the smoke task to be
    # healthy; a job older than max_message_age seconds in the queue raises an alarm.
    rollout_timeout: float = 900.0
    smoke_timeout: float = 600.0
    max_message_age: int = 600
    alarm_topic: str | None = None  # an SNS topic ARN the alarms notify
    # The job modules the image holds and the worker registers (JOBS_MODULES of the
    # deployer's environment): their schedules are deployed, the worker is told them.
    job_modules: tuple[str, ...] = DEFAULT_JOB_MODULES

    def backlog_target(self) -> float:
        """Messages one task may have waiting: acceptable latency / seconds per job."""
        if self.acceptable_latency <= 0 or self.seconds_per_job <= 0:
            raise ValueError("--acceptable-latency and --seconds-per-job must be positive")
        return round(self.acceptable_latency / self.seconds_per_job, 2)


@dataclass(frozen=True)
class Stack:
    """Names and ARNs of everything one stack owns, derived from its name alone."""

    name: str
    region: str
    account_id: str
    options: Options = field(default_factory=Options)
    # From STS's caller identity (its ARN names the partition); else from the region.
    partition: str = ""

    def __post_init__(self) -> None:
        if not self.partition:
            object.__setattr__(self, "partition", partition_of(self.region))
        if (
            not self.name
            or not all(c.isalnum() or c == "-" for c in self.name)
            or len(self.name) > 32
            or not self.name[0].isalpha()
        ):
            raise ValueError(
                f"stack name {self.name!r}: use 1-32 letters, digits and '-', "
                "starting with a letter"
            )

    @property
    def tags(self) -> dict[str, str]:
        return {"stack": self.name, "app": APP_TAG}

    # names
    @property
    def queue_name(self) -> str:
        return f"{self.name}-jobs"

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-jobs-dlq"

    @property
    def table_name(self) -> str:
        return f"{self.name}-jobs"

    @property
    def repository(self) -> str:
        return self.name.lower()

    @property
    def log_group(self) -> str:
        return f"/ecs/{self.name}"

    @property
    def execution_role(self) -> str:
        return f"{self.name}-task-execution"

    @property
    def task_role(self) -> str:
        return f"{self.name}-task"

    @property
    def api_role(self) -> str:
        return f"{self.name}-apigateway"

    @property
    def scheduler_role(self) -> str:
        return f"{self.name}-scheduler"

    @property
    def schedule_group(self) -> str:
        return f"{self.name}-schedules"

    @property
    def cluster(self) -> str:
        return self.name

    @property
    def family(self) -> str:
        return f"{self.name}-worker"

    @property
    def service(self) -> str:
        return SERVICE

    @property
    def api_name(self) -> str:
        return self.name

    @property
    def api_key_name(self) -> str:
        return f"{self.name}-key"

    @property
    def usage_plan_name(self) -> str:
        return f"{self.name}-plan"

    @property
    def scaling_resource_id(self) -> str:
        return f"service/{self.cluster}/{self.service}"

    @property
    def target_policy(self) -> str:
        return f"{self.name}-backlog-per-task"

    @property
    def step_policy(self) -> str:
        return f"{self.name}-scale-out-from-zero"

    @property
    def alarm(self) -> str:
        return f"{self.name}-queue-waiting-no-workers"

    @property
    def dlq_alarm(self) -> str:
        return f"{self.name}-dead-letters"

    @property
    def age_alarm(self) -> str:
        return f"{self.name}-oldest-message-age"

    @property
    def dns_suffix(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    # ARNs, known before anything exists (so `plan` can show the links)
    def _arn(self, service: str, resource: str, region: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id}:{resource}"
        )

    @property
    def queue_arn(self) -> str:
        return self._arn("sqs", self.queue_name)

    @property
    def dlq_arn(self) -> str:
        return self._arn("sqs", self.dlq_name)

    @property
    def queue_url(self) -> str:
        return f"https://sqs.{self.region}.{self.dns_suffix}/{self.account_id}/{self.queue_name}"

    @property
    def schedule_group_arn(self) -> str:
        return self._arn("scheduler", f"schedule-group/{self.schedule_group}")

    @property
    def deferred_schedules_arn_pattern(self) -> str:
        # Deferred jobs' one-time schedules (tasks.ops.one_time_schedules), named at run time.
        return self._arn("scheduler", f"schedule/{self.schedule_group}/job-*")

    @property
    def table_arn(self) -> str:
        return self._arn("dynamodb", f"table/{self.table_name}")

    @property
    def bucket_name(self) -> str:
        """Large results and arguments (the claim check). S3 names are global: the account
        and region make it this stack's; a long stack name is cut and given a hash."""
        rest = f"-{self.account_id}-{self.region}-payloads"
        base = self.name.lower()
        if len(base) + len(rest) > 63:
            digest = hashlib.sha256(self.name.encode()).hexdigest()[:6]
            base = f"{base[: 63 - len(rest) - 7].rstrip('-')}-{digest}"
        return base + rest

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.bucket_name}"

    @property
    def repository_arn(self) -> str:
        return self._arn("ecr", f"repository/{self.repository}")

    @property
    def repository_uri(self) -> str:
        return f"{self.account_id}.dkr.ecr.{self.region}.{self.dns_suffix}/{self.repository}"

    @property
    def log_group_arn(self) -> str:
        return self._arn("logs", f"log-group:{self.log_group}")

    @property
    def callback_secret_name(self) -> str:
        """The completion callbacks' HMAC key in Secrets Manager (ecs.callback_secret)."""
        return f"{self.name}-callback-secret"

    @property
    def callback_secret_arn_pattern(self) -> str:
        # Secrets Manager appends "-" and six random characters to a secret's ARN: the
        # pattern AWS documents for naming one secret before it exists.
        return self._arn("secretsmanager", f"secret:{self.callback_secret_name}-??????")

    def role_arn(self, role: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{role}"

    @property
    def cluster_arn(self) -> str:
        return self._arn("ecs", f"cluster/{self.cluster}")

    @property
    def service_arn(self) -> str:
        return self._arn("ecs", f"service/{self.cluster}/{self.service}")

    @property
    def task_arn_pattern(self) -> str:
        # Task ids are only known at run time; this names the tasks of this cluster alone.
        return self._arn("ecs", f"task/{self.cluster}/*")

    def api_url(self, api_id: str) -> str:
        return f"https://{api_id}.execute-api.{self.region}.{self.dns_suffix}/{STAGE}"

    def worker_settings(self) -> Settings:
        """The deployed worker's Settings: this stack's names and the command line's
        options, every other value at its default."""
        o = self.options
        return Settings(
            target="aws",
            region=self.region,
            queue_name=self.queue_name,
            queue_url=self.queue_url,
            dlq_name=self.dlq_name,
            table_name=self.table_name,
            bucket_name=self.bucket_name,
            schedule_group=self.schedule_group,
            scheduler_role_arn=self.role_arn(self.scheduler_role),
            job_modules=o.job_modules,
            visibility_timeout=o.visibility_timeout,
            max_receive_count=o.max_receive_count,
            list_shards=o.list_shards,
            concurrency=o.concurrency,
            wait_time_seconds=20,
            shutdown_deadline=STOP_TIMEOUT - 20,
        )

    def worker_environment(self) -> dict[str, str]:
        """The task definition's environment: the worker's Settings, rendered by them."""
        return self.worker_settings().to_env()
