"""ECS scale-in protection while this worker runs jobs, let go so that deploys finish.

When ECS scales the service in, it stops tasks it chooses, and a running job
is interrupted (and redelivered later). With ECS_AGENT_URI set (ECS sets it in
every container), this middleware asks the ECS agent to protect the task
while any job is running or waiting for a pool process, and to drop the
protection once the worker is idle:

    PUT $ECS_AGENT_URI/task-protection/v1/state
    {"ProtectionEnabled": true, "ExpiresInMinutes": N}

N is longer than the queue's visibility timeout: if the worker hangs or the
release is lost, the protection lapses by itself. It is renewed at N/2 while
jobs keep running. The agent's answers are logged; a failure never stops a job.

Letting deploys and scale-in finish. ECS stops no protected task, neither for
scale-in nor for a rolling deployment, so a worker that is never idle would
hold both back for ever. The worker therefore *drains* (stops taking messages,
as `celery control cancel_consumer` does; lets the jobs it holds finish; then
releases its protection) when either:

* its task no longer belongs to the service's PRIMARY deployment (a deploy has
  begun). Checked every ECS_DEPLOYMENT_CHECK_SECONDS (30) while protected, from
  the task metadata endpoint ($ECS_CONTAINER_METADATA_URI_V4/task: cluster,
  task ARN, family and revision), ecs:DescribeTasks once (the deployment that
  started the task, `startedBy`, and its service, `group`) and
  ecs:DescribeServices. The worker stays drained: ECS stops it next (or, should
  it not, the health check does once the heartbeat is too old: nothing is received);
* or it has been protected without a break for ECS_PROTECTION_MAX_WINDOW
  seconds (1800). It takes messages again after ECS_PROTECTION_COOLDOWN seconds
  (60, and never less than the long-poll wait + 5 s), a window in which ECS may
  stop it. This bounds the wait when the deployment check cannot run (no IAM
  permission, a task outside a service).

Bounds. Once a deployment starts, this task's protection is released within
ECS_DEPLOYMENT_CHECK_SECONDS + the longest job the worker holds at that moment
+ MIN_PUT_INTERVAL (10 s) + 2 s; without the check, within
ECS_PROTECTION_MAX_WINDOW + the same. Meanwhile the messages it no longer takes
stay in the queue for the other (new) tasks.

Rate. The agent relays each PUT to ECS's UpdateTaskProtection API, which ECS
throttles per account and Region (a token bucket). Each worker sends at most
one PUT every MIN_PUT_INTERVAL (10 s), whatever the load, plus a single release
on SIGTERM; under steady load that is one renewal every N/2 minutes and one
release/enable pair per max window; a failed or refused PUT is retried after
10 s, doubling up to 120 s. The price of the interval: a job that arrives less
than 10 s after a release runs unprotected for the rest of those seconds (a
scale-in then is a warm shutdown, which lets it finish).

SIGTERM/SIGINT/SIGQUIT: the protection is released at once (the warm shutdown
still lets the running jobs finish).

IAM (task role): ecs:UpdateTaskProtection on the cluster's tasks (the agent
calls it with the task's credentials); for the deployment check,
ecs:DescribeTasks on the cluster's tasks and ecs:DescribeServices on the
service. Without the latter two the check logs why once and turns itself off.

Calls run on threads of their own so the consumer's event loop never waits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tasks.ops import clients
from tasks.ops.settings import Settings
from tasks.worker import liveness
from tasks.worker.celery_private import active_or_reserved, resume_consuming, stop_consuming
from tasks.worker.middleware import Middleware

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
HTTP_TIMEOUT = 5.0
# At most one UpdateTaskProtection (through the agent) per this many seconds per task.
MIN_PUT_INTERVAL = 10.0
MAX_BACKOFF = 120.0
DEFAULT_MAX_WINDOW = 1800.0
DEFAULT_COOLDOWN = 60.0
DEFAULT_DEPLOYMENT_CHECK = 30.0
# Resuming while a long poll of before the pause is still out would run two receive loops.
COOLDOWN_MARGIN = 5.0

# The deployment check is a background nicety: fail fast, try again next period.
ECS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=2, read_timeout=5)
DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")

SERVING = "serving"    # taking messages
DRAINING = "draining"  # not taking messages; held jobs finishing, protection kept for them
PAUSED = "paused"      # drained after the max window; takes messages again after the cool-down
RETIRED = "retired"    # drained for a newer deployment: stays so until ECS stops the task


def protection_minutes(visibility_timeout: int) -> int:
    override = os.environ.get("ECS_PROTECTION_MINUTES")
    if override:
        return max(1, int(override))
    return max(1, math.ceil(visibility_timeout / 60) + 2)


def env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %s", name, raw, default)
        return default


class AgentClient:
    def __init__(self, agent_uri: str) -> None:
        self.url = agent_uri.rstrip("/") + "/task-protection/v1/state"

    def put(self, enabled: bool, minutes: int | None = None) -> bool:
        body: dict = {"ProtectionEnabled": enabled}
        if enabled and minutes:
            body["ExpiresInMinutes"] = minutes
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), method="PUT",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                answer = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("ECS task protection (%s) failed: %s", enabled, exc)
            return False
        if not isinstance(answer, dict) or answer.get("failure") or answer.get("error"):
            log.warning("ECS task protection (%s) refused: %s", enabled, answer)
            return False
        log.info("ECS task protection %s", "enabled" if enabled else "released")
        return True


@dataclass(frozen=True)
class TaskIdentity:
    cluster: str
    task_arn: str
    service: str
    deployment: str | None  # the deployment that started the task (`startedBy`), if one did
    task_definition: str    # "family:revision"


class DeploymentWatch:
    """Tells whether this task still belongs to its service's PRIMARY deployment."""

    def __init__(self, metadata_uri: str, ecs: Callable[[], Any]) -> None:
        self.metadata_url = metadata_uri.rstrip("/") + "/task"
        self.ecs = ecs
        self.identity: TaskIdentity | None = None
        self.off: str | None = None  # why the check is off for good
        self.failing = False

    @classmethod
    def from_env(cls) -> DeploymentWatch | None:
        uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
        if not uri:
            return None
        settings = Settings.from_env()
        endpoint = os.environ.get("AWS_ENDPOINT_URL_ECS") or os.environ.get("AWS_ENDPOINT_URL")
        return cls(uri, lambda: clients.client("ecs", settings, endpoint, ECS_CONFIG))

    def superseded(self) -> bool:
        """True once the service's PRIMARY deployment is not this task's; False if unknown."""
        if self.off:
            return False
        try:
            identity = self.identity or self._identify()
            if identity is None:
                return False
            answer = self.ecs().describe_services(cluster=identity.cluster,
                                                  services=[identity.service])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in DENIED:
                self._turn_off(f"not allowed ({code}); the task role needs ecs:DescribeTasks "
                               "and ecs:DescribeServices")
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
        primary = next((d for d in services[0].get("deployments", [])
                        if d.get("status") == "PRIMARY"), None)
        if primary is None:
            return False
        if identity.deployment and primary.get("id") != identity.deployment:
            return True
        return not str(primary.get("taskDefinition", "")).endswith(
            "task-definition/" + identity.task_definition)

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
            cluster=cluster, task_arn=task_arn, service=group.removeprefix("service:"),
            deployment=started_by if started_by.startswith("ecs-svc/") else None,
            task_definition=f"{meta['Family']}:{meta['Revision']}")
        log.info("deployment check: task %s of service %s, deployment %s, %s", task_arn,
                 self.identity.service, self.identity.deployment, self.identity.task_definition)
        return self.identity

    def _turn_off(self, why: str) -> None:
        self.off = why
        log.warning("deployment check off: %s; the protection's max window still bounds it",
                    why)

    def _failed(self, exc: Exception) -> None:
        if not self.failing:  # once per failing streak, not once a period
            log.warning("deployment check failed (will try again): %s", exc)
        self.failing = True


class ScaleInProtection(Middleware):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        uri = os.environ.get("ECS_AGENT_URI")
        self.client = AgentClient(uri) if uri else None
        settings = Settings.from_env()
        self.minutes = protection_minutes(settings.visibility_timeout)
        self.max_window = env_seconds("ECS_PROTECTION_MAX_WINDOW", DEFAULT_MAX_WINDOW)
        self.cooldown = max(env_seconds("ECS_PROTECTION_COOLDOWN", DEFAULT_COOLDOWN),
                            settings.wait_time_seconds + COOLDOWN_MARGIN)
        self.check_every = max(1.0, env_seconds("ECS_DEPLOYMENT_CHECK_SECONDS",
                                                DEFAULT_DEPLOYMENT_CHECK))
        self.watch = DeploymentWatch.from_env() if self.client else None

        self.consumer: Any = None
        self.state = SERVING
        self.retiring = False  # why we drain: a newer deployment (True) or the window
        self.paused_queues: list[str] = []
        self.resume_at = 0.0
        self.protected = False
        self.protected_since = 0.0
        self.renew_at = 0.0
        self.next_put_at = 0.0
        self.put_failures = 0
        self.last_arrival = float("-inf")

        self.wake = threading.Event()
        self.shutting_down = threading.Event()
        self.superseded = threading.Event()
        self.thread: threading.Thread | None = None
        self.watch_thread: threading.Thread | None = None

    # --- hooks (the consumer's event loop, or a signal handler) --------------------------
    def job_received(self, request) -> None:
        if getattr(request, "eta", None):
            return  # held for later: protection waits until it is due
        self.last_arrival = self.clock()
        self.wake.set()

    def consumer_started(self, consumer) -> None:
        if self.client is None:
            return
        self.consumer = consumer
        if self.state != SERVING:
            # A reconnect builds its task consumer from the queues still selected, and
            # ours are deselected; this only makes sure.
            self._stop_consuming_now(consumer)
        elif self.paused_queues:
            self._resume_now(consumer)
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="scale-in-protection",
                                           daemon=True)
            self.thread.start()
        if self.watch is not None and self.watch_thread is None:
            self.watch_thread = threading.Thread(target=self.watch_deployments,
                                                 name="deployment-check", daemon=True)
            self.watch_thread.start()

    def consumer_stopping(self, consumer) -> None:
        # Jobs may still be running (a reconnect): the thread goes on without a consumer.
        self.consumer = None
        if self.shutting_down.is_set() and self.thread is not None:
            self.thread.join(HTTP_TIMEOUT + CHECK_INTERVAL)  # let the release go out

    def shutdown_requested(self, how: str) -> None:
        # Called from the signal handler: only flags, the thread does the release.
        self.shutting_down.set()
        self.wake.set()

    # --- the protection thread -------------------------------------------------------------
    def busy(self, now: float) -> bool:
        """A job is running or waiting for a pool process (ETA tasks waiting do not count)."""
        # task_received fires just before the request is counted as reserved.
        return active_or_reserved() or now - self.last_arrival < CHECK_INTERVAL

    def run(self) -> None:
        while not self.shutting_down.is_set():
            try:
                self.step(self.clock())
            except Exception:  # never let the thread die: the expiry is only a backstop
                log.exception("scale-in protection step failed")
            self.wake.wait(CHECK_INTERVAL)
            self.wake.clear()
        if self.protected:
            self.put(False, force=True)

    def step(self, now: float) -> None:
        busy = self.busy(now)
        if self.state == SERVING:
            if self.superseded.is_set():
                self.drain(retiring=True)
            elif self.protected and now - self.protected_since >= self.max_window:
                self.drain(retiring=False)
        elif self.state == PAUSED and now >= self.resume_at:
            self.resume()

        wanted = busy and self.state in (SERVING, DRAINING)
        if wanted and (not self.protected or now >= self.renew_at):
            self.put(True)
        elif not wanted and self.protected:
            self.put(False)

        if self.state == DRAINING and not busy and not self.protected:
            if self.retiring:
                self.state = RETIRED
                log.warning("drained and released for the new deployment; ECS stops this task")
            else:
                self.state = PAUSED
                self.resume_at = self.clock() + self.cooldown
                log.warning("drained and released after %.0f s of protection; taking jobs "
                            "again in %.0f s", self.max_window, self.cooldown)
        if self.state in (DRAINING, PAUSED):
            # Not receiving on purpose, for a while: keep the health check's heartbeat
            # fresh, from the event loop, so a wedged loop still shows. A retired worker
            # serves no one: its heartbeat ages, and should ECS not stop it (a rollback
            # that kept it), the health check has it replaced.
            self._on_loop(lambda consumer: liveness.mark("paused"))

    def put(self, enabled: bool, *, force: bool = False) -> bool:
        """One PUT to the agent, unless the last was under MIN_PUT_INTERVAL ago."""
        now = self.clock()
        if not force and now < self.next_put_at:
            return False
        ok = self.client.put(enabled, self.minutes if enabled else None)
        done = self.clock()
        if ok:
            self.put_failures = 0
            self.next_put_at = done + MIN_PUT_INTERVAL
            if enabled:
                if not self.protected:
                    self.protected_since = now
                self.renew_at = now + self.minutes * 60 / 2
            self.protected = enabled
        else:
            self.put_failures += 1
            self.next_put_at = done + min(MIN_PUT_INTERVAL * 2 ** (self.put_failures - 1),
                                          MAX_BACKOFF)
        return ok

    def drain(self, *, retiring: bool) -> None:
        self.state, self.retiring = DRAINING, retiring
        why = ("this task is no longer of the service's primary deployment" if retiring else
               f"protected for {self.max_window:.0f} s without a break")
        log.warning("%s: stop taking jobs, finish the ones held, then release the scale-in "
                    "protection", why)
        self._on_loop(self._stop_consuming_now)

    def resume(self) -> None:
        self.state = SERVING
        log.warning("cool-down over: taking jobs again")
        self._on_loop(self._resume_now)

    def _on_loop(self, fn: Callable[[Any], None]) -> None:
        consumer = self.consumer
        if consumer is not None:
            consumer.call_soon(fn, consumer)

    def _stop_consuming_now(self, consumer) -> None:
        if self.state == SERVING:
            return  # resumed before this ran
        names = stop_consuming(consumer)
        self.paused_queues = list(dict.fromkeys(self.paused_queues + names))

    def _resume_now(self, consumer) -> None:
        if self.state != SERVING:
            return
        names, self.paused_queues = self.paused_queues, []
        resume_consuming(consumer, names)

    # --- the deployment-check thread -------------------------------------------------------
    def watch_deployments(self) -> None:
        while not self.shutting_down.wait(self.check_every):
            if self.superseded.is_set() or self.watch.off:
                return
            if not self.protected:
                continue  # an unprotected task can be stopped anyway: ask nothing
            if self.watch.superseded():
                log.warning("deployment check: the service's primary deployment is no longer "
                            "this task's")
                self.superseded.set()
                self.wake.set()
