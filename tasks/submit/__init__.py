"""The submitting side, in every process that sends jobs (tasks.app and tasks.client).

`publish.py`: the one `before_task_publish` receiver and its steps (headers every message
gains); `claim_check.py`: arguments too large for one SQS message go to S3, and the message
carries a reference the worker reads back (tasks.worker.claim_check).
"""
