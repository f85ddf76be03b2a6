"""Base class of every task in this app."""

from celery import Task


class JobTask(Task):
    # Our Request subclass passes SQS's receive count into the task's context.
    Request = "tasks.request:SQSRequest"
