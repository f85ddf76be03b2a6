"""A Celery app for services that submit jobs by name and read their results.

    from tasks.client import app

    result = app.send_task("tasks.text.analyze", kwargs={"text": "Hello there."})
    result.get(timeout=60)              # or later: app.AsyncResult(job_id).get()
    app.AsyncResult(job_id).revoke()    # or app.control.revoke(job_id): the job record
    list_jobs("FAILURE", since="2026-12-01T00:00:00Z").jobs   # newest first (docs/http-api.md)
    app.send_task(name, kwargs={...}, headers=callback("https://example.com/hook"))

It is made by tasks.app_factory from the environment's Settings (queue, table, JSON only;
`app.settings`) and loads nothing else: no job module, no `tasks.worker`, and it needs
none of the job code, so a service can install this package for its settings alone.
Submitting by name has no argument check on the caller's side; the worker binds and checks
the arguments and a bad call FAILs with InvalidJobInput. A custom exception raised by a job
comes back as that class if the service has imported its module, else as a stand-in class
of the same name made by Celery (module `celery.exceptions`), with the same arguments.
"""

from __future__ import annotations

from botocore.config import Config
from kombu.transport import SQS

from tasks.app_factory import create_app
from tasks.callbacks import callback  # noqa: F401  headers=callback(url): docs/callbacks.md
from tasks.celery_config import settings_of
from tasks.ops.clients import sqs_client
from tasks.results.listing import JobPage, list_jobs  # noqa: F401  jobs by status, newest first


class Channel(SQS.Channel):
    """kombu's SQS channel with our boto3 client: endpoint and credentials from the app's
    Settings (handed over in the transport options)."""

    def new_sqs_client(self, region, access_key_id, secret_access_key, session_token=None):
        config = Config(**(self.transport_options.get("client-config") or {}))
        return sqs_client(settings_of(self.transport_options), config=config)


class Transport(SQS.Transport):
    """For sending only: the worker's transport (tasks.worker.transport) adds the
    receiving side, which a client does not need and must not import."""

    Channel = Channel


app = create_app(role="client")
