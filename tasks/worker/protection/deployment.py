"""Does this task still belong to its service's PRIMARY deployment? (ECS task metadata
endpoint, ecs:DescribeTasks once, ecs:DescribeServices each check.)"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tasks.ops import clients
from tasks.ops.settings import Settings
from tasks.worker.protection.agent import HTTP_TIMEOUT

log = logging.getLogger(__name__)

# The deployment check is a background nicety: fail fast, try again next period.
ECS_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5
)
DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")


@dataclass(frozen=True)
class TaskIdentity:
    cluster: str
    task_arn: str
    service: str
    deployment: str | None  # the deployment that started the task (`startedBy`), if one did
    task_definition: str  # "family:revision"


class DeploymentWatch:
    """Tells whether this task still belongs to its service's PRIMARY deployment."""

    def __init__(self, metadata_uri: str, ecs: Callable[[], Any]) -> None:
        self.metadata_url = metadata_uri.rstrip("/") + "/task"
        self.ecs = ecs
        self.identity: TaskIdentity | None = None
        self.off: str | None = None  # why the check is off for good
        self.failing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DeploymentWatch | None:
        uri = settings.ecs_metadata_uri
        if not uri:
            return None
        return cls(uri, lambda: clients.client("ecs", settings, settings.ecs_endpoint, ECS_CONFIG))

    def superseded(self) -> bool:
        """True once the service's PRIMARY deployment is not this task's; False if unknown."""
        if self.off:
            return False
        try:
            identity = self.identity or self._identify()
            if identity is None:
                return False
            answer = self.ecs().describe_services(
                cluster=identity.cluster, services=[identity.service]
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in DENIED:
                self._turn_off(
                    f"not allowed ({code}); the task role needs ecs:DescribeTasks "
                    "and ecs:DescribeServices"
                )
            else:
                self._failed(exc)
            return False
        except (BotoCoreError, OSError, ValueError, KeyError, TypeError) as exc:
            self._failed(exc)
            return False
        self.failing = False
        services = answer.get("services") or []
        if not services or services[0].get("status") != "ACTIVE":
            return True  # the service is gone or being deleted: its tasks will be stopped
        primary = next(
            (d for d in services[0].get("deployments", []) if d.get("status") == "PRIMARY"), None
        )
        if primary is None:
            return False
        if identity.deployment and primary.get("id") != identity.deployment:
            return True
        return not str(primary.get("taskDefinition", "")).endswith(
            "task-definition/" + identity.task_definition
        )

    def _identify(self) -> TaskIdentity | None:
        with urllib.request.urlopen(self.metadata_url, timeout=HTTP_TIMEOUT) as response:
            meta = json.loads(response.read())
        cluster, task_arn = meta["Cluster"], meta["TaskARN"]
        tasks = self.ecs().describe_tasks(cluster=cluster, tasks=[task_arn]).get("tasks") or []
        if not tasks:
            self._turn_off(f"ECS does not know task {task_arn}")
            return None
        group = tasks[0].get("group") or ""
        if not group.startswith("service:"):
            self._turn_off(f"the task is not part of a service (group {group!r})")
            return None
        started_by = tasks[0].get("startedBy") or ""
        self.identity = TaskIdentity(
            cluster=cluster,
            task_arn=task_arn,
            service=group.removeprefix("service:"),
            deployment=started_by if started_by.startswith("ecs-svc/") else None,
            task_definition=f"{meta['Family']}:{meta['Revision']}",
        )
        log.info(
            "deployment check: task %s of service %s, deployment %s, %s",
            task_arn,
            self.identity.service,
            self.identity.deployment,
            self.identity.task_definition,
        )
        return self.identity

    def _turn_off(self, why: str) -> None:
        self.off = why
        log.warning("deployment check off: %s; the protection's max window still bounds it", why)

    def _failed(self, exc: Exception) -> None:
        if not self.failing:  # once per failing streak, not once a period
            log.warning("deployment check failed (will try again): %s", exc)
        self.failing = True
