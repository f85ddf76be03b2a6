"""The Celery application; `celery -A tasks worker` finds it as `tasks.app`."""

from celery import Celery

app = Celery("tasks", task_cls="tasks.base:JobTask")
app.config_from_object("celeryconfig")
