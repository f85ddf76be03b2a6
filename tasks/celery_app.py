"""The Celery application; `celery -A tasks worker` finds it as `tasks.app`."""

import importlib
import logging

from celery import Celery

from tasks import JOB_MODULES
from tasks.ops.settings import Settings
from tasks.submit import publish

# botocore logs every credential and endpoint lookup at INFO; keep worker logs readable.
logging.getLogger("botocore").setLevel(logging.WARNING)

app = Celery("tasks", task_cls="tasks.jobkit.task:JobTask",
             control="tasks.results.control:Control",  # revoke through the job record
             amqp="tasks.submit.claim_check:ClaimCheckAMQP")  # large arguments go to S3
app.config_from_object("celeryconfig")
publish.connect()  # what every submission adds to its message
# The built-in completion-callback task (tasks.callbacks.deliver) and its trigger.
importlib.import_module("tasks.callbacks")

# Registering the jobs needs `app` defined above: each job module imports it.
for _module in (*JOB_MODULES, *Settings.from_env().extra_job_modules):
    importlib.import_module(_module)
