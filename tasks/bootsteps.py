"""Worker bootsteps: a heartbeat file for health checks without remote control."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from celery import bootsteps

from tasks.celery_app import app
from tasks.protection import ScaleInProtection
from tasks.settings import Settings
from tasks.shutdown import ShutdownDeadline
from tasks.visibility import VisibilityHeartbeat

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 10.0


class HeartbeatFile(bootsteps.StartStopStep):
    """Touches a file while the consumer runs; `python -m tasks.health` reads its age.

    It lives in the consumer's event loop, so a consumer that is stuck or
    disconnected stops touching it and the container is reported unhealthy.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.path = Path(Settings.from_env().heartbeat_file)
        self.tref = None

    def start(self, parent) -> None:
        self.touch()
        self.tref = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL, self.touch)

    def stop(self, parent) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def touch(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            os.utime(self.path)
        except OSError:
            log.warning("cannot touch heartbeat file %s", self.path, exc_info=True)


app.steps["consumer"].add(HeartbeatFile)
# Reliability on SQS: visibility heartbeat, shutdown deadline, scale-in protection.
app.steps["consumer"].add(VisibilityHeartbeat)
app.steps["consumer"].add(ShutdownDeadline)
app.steps["consumer"].add(ScaleInProtection)
