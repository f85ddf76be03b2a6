"""A Celery app for services that submit jobs by name and read their results.

    from tasks.client import app

    result = app.send_task("tasks.text.analyze", kwargs={"text": "Hello there."})
    result.get(timeout=60)              # or later: app.AsyncResult(job_id).get()
    app.AsyncResult(job_id).revoke()    # or app.control.revoke(job_id): the job record
    list_jobs("FAILURE", since="2026-12-01T00:00:00Z").jobs   # newest first (README)
    app.send_task(name, kwargs={...}, headers=callback("https://example.com/hook"))

It loads the project's Celery configuration (`celeryconfig`: queue, table, JSON only) and
nothing else: no job module, no `tasks.worker`, and it needs none of the job code, so a
service can install this package for its settings alone. Submitting by name has no
argument check on the caller's side; the worker binds and checks the arguments and a bad
call FAILs with InvalidJobInput. A custom exception raised by a job comes back as that
class if the service has imported its module, else as a stand-in class of the same name
made by Celery (module `celery.exceptions`), with the same arguments.
"""

from __future__ import annotations

from botocore.config import Config
from celery import Celery
from kombu.transport import SQS

from tasks.callbacks import callback  # noqa: F401  headers=callback(url): see README
from tasks.ops.clients import sqs_client
from tasks.ops.settings import Settings
from tasks.results.listing import JobPage, list_jobs  # noqa: F401  jobs by status, newest first
from tasks.submit import publish


class Channel(SQS.Channel):
    """kombu's SQS channel with our boto3 client: endpoint and credentials from Settings."""

    def new_sqs_client(self, region, access_key_id, secret_access_key, session_token=None):
        config = Config(**(self.transport_options.get("client-config") or {}))
        return sqs_client(Settings.from_env(), config=config)


class Transport(SQS.Transport):
    """For sending only: the worker's transport (tasks.worker.transport) adds the
    receiving side, which a client does not need and must not import."""

    Channel = Channel


app = Celery("tasks.client", control="tasks.results.control:Control",  # revoke, as the app
             amqp="tasks.submit.claim_check:ClaimCheckAMQP")  # large arguments go to S3
app.config_from_object("celeryconfig")
publish.connect()  # what every submission adds to its message
app.conf.broker_transport = "tasks.client:Transport"
