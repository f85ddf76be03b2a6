"""ECS scale-in protection while this worker runs jobs.

When ECS scales the service in, it stops tasks it chooses, and a running job
is interrupted (and redelivered later). With ECS_AGENT_URI set (ECS sets it in
every container), this middleware asks the ECS agent to protect the task
while any job is running or waiting for a pool process, and to drop the
protection once the worker is idle:

    PUT $ECS_AGENT_URI/task-protection/v1/state
    {"ProtectionEnabled": true, "ExpiresInMinutes": N}

N is longer than the queue's visibility timeout: if the worker hangs or the
release is lost, the protection lapses by itself. It is renewed while jobs
keep running. The agent's answers are logged; a failure never stops a job.
Calls run on a thread of their own so the consumer's event loop never waits.
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

from tasks.ops.settings import Settings
from tasks.worker.celery_private import active_or_reserved
from tasks.worker.middleware import Middleware

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
HTTP_TIMEOUT = 5.0


def protection_minutes(visibility_timeout: int) -> int:
    override = os.environ.get("ECS_PROTECTION_MINUTES")
    if override:
        return max(1, int(override))
    return max(1, math.ceil(visibility_timeout / 60) + 2)


def busy() -> bool:
    """A job is running or waiting for a pool process (ETA tasks waiting do not count)."""
    if active_or_reserved():
        return True
    # task_received fires just before the request is counted as reserved.
    return time.monotonic() - _last_arrival < CHECK_INTERVAL


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


# Set when a job arrives, so protection is asked for at once rather than at the next check.
_job_arrived = threading.Event()
_last_arrival = float("-inf")


class ScaleInProtection(Middleware):
    def __init__(self) -> None:
        uri = os.environ.get("ECS_AGENT_URI")
        self.client = AgentClient(uri) if uri else None
        self.minutes = protection_minutes(Settings.from_env().visibility_timeout)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def job_received(self, request) -> None:
        global _last_arrival
        if getattr(request, "eta", None):
            return  # held for later: protection waits until it is due
        _last_arrival = time.monotonic()
        _job_arrived.set()

    def consumer_started(self, consumer) -> None:
        if self.client is None or self.thread is not None:
            return
        self.stopping.clear()
        self.thread = threading.Thread(target=self.run, name="scale-in-protection", daemon=True)
        self.thread.start()

    def consumer_stopping(self, consumer) -> None:
        if self.thread is None:
            return
        self.stopping.set()
        _job_arrived.set()
        self.thread.join(HTTP_TIMEOUT * 2)
        self.thread = None
    def run(self) -> None:
        protected = False
        renew_at = retry_at = 0.0
        while True:
            stopping = self.stopping.is_set()
            wanted = busy() and not stopping
            now = time.monotonic()
            if now >= retry_at and wanted and (not protected or now >= renew_at):
                if self.client.put(True, self.minutes):
                    protected, renew_at = True, now + self.minutes * 60 / 2
                else:
                    retry_at = now + 10  # the agent is unwell: do not hammer it
            elif (now >= retry_at or stopping) and not wanted and protected:
                if self.client.put(False):
                    protected = False
                else:
                    retry_at = now + 10
            if stopping:
                return  # released, or the expiry releases it
            _job_arrived.wait(CHECK_INTERVAL)
            _job_arrived.clear()
