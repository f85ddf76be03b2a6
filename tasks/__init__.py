"""Celery app, job tasks and the DynamoDB job backend.

Importing the package registers every task, so `celery -A tasks worker`
serves them and `from tasks.text import analyze; analyze.delay(...)` works.
"""

from tasks import bootsteps as _bootsteps  # noqa: F401  (registers worker bootsteps)
from tasks import debug, documents, enrich, text  # noqa: F401  (registers the tasks)
from tasks.celery_app import app

__all__ = ["app"]
