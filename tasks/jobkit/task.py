"""The base class of every job task."""

from celery import Task


class JobTask(Task):
    # A string, so defining jobs never imports the worker runtime: the worker
    # resolves it when it builds its strategy. The request carries SQS's
    # receive count into the task's context.
    Request = "tasks.worker.request:SQSRequest"
