"""The jobs, and the Celery app that runs them (`celery -A tasks worker`).

Layout (see docs/architecture.md): the modules beside this file are the shipped jobs, the
example of what a user writes (`text`, `documents`, `enrich`, `debug`); your own live in
your own package, named by JOBS_MODULES (tasks.ops.settings); `jobkit/` is what a job is
written with (`@job`, `Progress`, `once`); `worker/` is the machinery that runs
jobs on SQS; `results/` the DynamoDB job records; `ops/` settings, AWS clients
and provisioning, importable without the worker or the jobs; `app_factory` makes the
worker's app (`celery_app`) and the client's (`client`) from one `Settings`.

Importing `tasks` itself is cheap: the app and the jobs load on first use of
`tasks.app` (Celery's `-A tasks` asks for it), or when a job module is imported.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from tasks.celery_app import app

        return app
    if name == "list_jobs":  # tasks.list_jobs("FAILURE"): the listing, without the app
        from tasks.results.listing import list_jobs

        return list_jobs
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
