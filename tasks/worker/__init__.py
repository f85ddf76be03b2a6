"""The machinery that runs jobs on SQS: loaded by `celery worker` only.

`consumer` is the entry point (celeryconfig's `worker_consumer`); it adds the
worker's steps. Nothing here is imported by a process that only submits jobs.
"""
