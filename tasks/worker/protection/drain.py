"""The drain state machine: when to hold the protection, when to stop taking messages.

    SERVING --(a newer deployment)--> DRAINING --(idle, released)--> RETIRED
    SERVING --(max window protected)--> DRAINING --(idle, released)--> PAUSED
    PAUSED --(cool-down over)--> SERVING

`step` runs once a second on the protection thread (tasks.worker.protection.middleware);
consuming stops and resumes on the consumer's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks.celery_private import active_or_reserved, resume_consuming, stop_consuming
from tasks.ops.settings import Settings
from tasks.worker import liveness

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
# At most one UpdateTaskProtection (through the agent) per this many seconds per task.
MIN_PUT_INTERVAL = 10.0
MAX_BACKOFF = 120.0
# ECS_PROTECTION_MAX_WINDOW, ECS_PROTECTION_COOLDOWN, ECS_DEPLOYMENT_CHECK_SECONDS
DEFAULT_MAX_WINDOW = Settings.protection_max_window
DEFAULT_COOLDOWN = Settings.protection_cooldown
DEFAULT_DEPLOYMENT_CHECK = Settings.deployment_check_seconds
# Resuming while a long poll of before the pause is still out would run two receive loops.
COOLDOWN_MARGIN = 5.0

SERVING = "serving"  # taking messages
DRAINING = "draining"  # not taking messages; held jobs finishing, protection kept for them
PAUSED = "paused"  # drained after the max window; takes messages again after the cool-down
RETIRED = "retired"  # drained for a newer deployment: stays so until ECS stops the task


class Drain:
    """The state machine's transitions and PUTs; ScaleInProtection holds its state."""

    clock: Callable[[], float]
    client: Any
    consumer: Any
    state: str
    retiring: bool
    paused_queues: list[str]
    resume_at: float
    protected: bool
    protected_since: float
    renew_at: float
    next_put_at: float
    put_failures: int
    last_arrival: float
    minutes: int
    max_window: float
    cooldown: float
    superseded: Any  # threading.Event

    def busy(self, now: float) -> bool:
        """A job is running or waiting for a pool process (ETA tasks waiting do not count)."""
        # task_received fires just before the request is counted as reserved.
        return active_or_reserved() or now - self.last_arrival < CHECK_INTERVAL

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
                log.warning(
                    "drained and released after %.0f s of protection; taking jobs again in %.0f s",
                    self.max_window,
                    self.cooldown,
                )
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
            self.next_put_at = done + min(
                MIN_PUT_INTERVAL * 2 ** (self.put_failures - 1), MAX_BACKOFF
            )
        return ok

    def drain(self, *, retiring: bool) -> None:
        self.state, self.retiring = DRAINING, retiring
        why = (
            "this task is no longer of the service's primary deployment"
            if retiring
            else f"protected for {self.max_window:.0f} s without a break"
        )
        log.warning(
            "%s: stop taking jobs, finish the ones held, then release the scale-in protection", why
        )
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
