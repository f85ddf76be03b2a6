"""The Celery application; `celery -A tasks worker` finds it as `tasks.app`."""

import logging

from celery import Celery

# botocore logs every credential and endpoint lookup at INFO; keep worker logs readable.
logging.getLogger("botocore").setLevel(logging.WARNING)

app = Celery("tasks", task_cls="tasks.base:JobTask")
app.config_from_object("celeryconfig")
