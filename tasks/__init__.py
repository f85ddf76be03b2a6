"""The jobs, and the Celery app that runs them (`celery -A tasks worker`).

Layout (see the README): the modules beside this file are the jobs a user
writes (`text`, `documents`, `enrich`, `debug`); `jobkit/` is what a job is
written with (`@job`, `Progress`, `once`); `worker/` is the machinery that runs
jobs on SQS; `results/` the DynamoDB job records; `ops/` settings, AWS clients
and provisioning, importable without the worker or the jobs.

Importing `tasks` itself is cheap: the app and the jobs load on first use of
`tasks.app` (Celery's `-A tasks` asks for it), or when a job module is imported.
"""

from __future__ import annotations

from typing import Any

# The jobs served by the production worker; JOBS_EXTRA_MODULES adds more (tests).
JOB_MODULES = ("tasks.text", "tasks.documents", "tasks.enrich", "tasks.debug")


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from tasks.celery_app import app

        return app
    if name == "list_jobs":  # tasks.list_jobs("FAILURE"): the listing, without the app
        from tasks.results.listing import list_jobs

        return list_jobs
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
