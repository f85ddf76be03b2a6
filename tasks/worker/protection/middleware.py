"""ScaleInProtection: the middleware that runs the protection and deployment threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tasks.ops.settings import Settings
from tasks.worker.middleware import Middleware
from tasks.worker.protection.agent import HTTP_TIMEOUT, AgentClient, protection_minutes
from tasks.worker.protection.deployment import DeploymentWatch
from tasks.worker.protection.drain import CHECK_INTERVAL, COOLDOWN_MARGIN, SERVING, Drain

log = logging.getLogger(__name__)


class ScaleInProtection(Drain, Middleware):
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        uri = settings.ecs_agent_uri
        self.client = AgentClient(uri) if uri else None
        self.minutes = protection_minutes(settings.visibility_timeout, settings.protection_minutes)
        self.max_window = settings.protection_max_window
        self.cooldown = max(
            settings.protection_cooldown, settings.wait_time_seconds + COOLDOWN_MARGIN
        )
        self.check_every = max(1.0, settings.deployment_check_seconds)
        self.watch = DeploymentWatch.from_settings(settings) if self.client else None

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
            self.thread = threading.Thread(target=self.run, name="scale-in-protection", daemon=True)
            self.thread.start()
        if self.watch is not None and self.watch_thread is None:
            self.watch_thread = threading.Thread(
                target=self.watch_deployments, name="deployment-check", daemon=True
            )
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

    # --- the deployment-check thread -------------------------------------------------------
    def watch_deployments(self) -> None:
        while not self.shutting_down.wait(self.check_every):
            if self.superseded.is_set() or self.watch.off:
                return
            if not self.protected:
                continue  # an unprotected task can be stopped anyway: ask nothing
            if self.watch.superseded():
                log.warning(
                    "deployment check: the service's primary deployment is no longer this task's"
                )
                self.superseded.set()
                self.wake.set()
