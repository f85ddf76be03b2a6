"""The one way a Celery app of this project is made: `create_app(settings, role=...)`.

    worker = create_app(role="worker")   # tasks.celery_app.app: `celery -A tasks worker`
    client = create_app(role="client")   # tasks.client.app: submit by name, read results

Both get their configuration from the same `Settings` (tasks.celery_config) and keep it as
`app.settings`: code that has the app (a task's `self.app`, the result backend, a
consumer) reads `app.settings` instead of the environment. Without `settings`, the
environment is read once, here. A worker app registers the job modules the settings name
(JOBS_MODULES, then JOBS_EXTRA_MODULES); a client registers none and imports no job code
and no `tasks.worker`.
"""

from __future__ import annotations

import importlib
import logging
from functools import cached_property
from typing import Any, Literal

from celery import Celery

from tasks.celery_config import celery_config
from tasks.ops.settings import Settings
from tasks.submit import publish

Role = Literal["worker", "client"]

# botocore logs every credential and endpoint lookup at INFO; keep worker logs readable.
logging.getLogger("botocore").setLevel(logging.WARNING)


class App(Celery):
    """Celery, plus `app.middleware`: the worker's hook list (tasks.worker.middleware), made
    with its defaults on first use, so that a process that only submits never loads it."""

    middleware_factory = "tasks.worker.default_middleware:default_stack"

    @cached_property
    def middleware(self) -> Any:
        module, _, name = self.middleware_factory.partition(":")
        return getattr(importlib.import_module(module), name)(self)


def create_app(settings: Settings | None = None, *, role: Role = "worker") -> Celery:
    settings = settings or Settings.from_env()
    if role not in ("worker", "client"):
        raise ValueError(f"role must be 'worker' or 'client', got {role!r}")
    worker = role == "worker"
    app = App(
        "tasks" if worker else "tasks.client",
        task_cls="tasks.jobkit.task:JobTask" if worker else None,
        control="tasks.results.control:Control",  # revoke through the job record
        amqp="tasks.submit.claim_check:ClaimCheckAMQP",
    )  # large arguments go to S3
    app.settings = settings
    app.conf.update(celery_config(settings))
    if not worker:
        # Sending only: the worker's transport adds the receiving side, which a client
        # does not need and must not import.
        app.conf.broker_transport = "tasks.client:Transport"
    publish.connect()  # what every submission adds to its message
    return app


def register_jobs(settings: Settings) -> None:
    """Import the job modules (each `@job` registers on the worker app, tasks.celery_app)
    and the built-in completion-callback task (tasks.callbacks.deliver) with its trigger."""
    importlib.import_module("tasks.callbacks")
    for module in settings.all_job_modules:
        importlib.import_module(module)
