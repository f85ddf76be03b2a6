"""The worker-side request: SQS delivery facts into the task's context, and the calls of
the middleware's message and run hooks (tasks.worker.middleware) where Celery's Request
has them: the body (`message_body`), started, failed or lost, finished."""

from __future__ import annotations

from tasks.celery_private import Request, Terminated, WorkerLostError, request_dict
from tasks.results.run_lease import run_token
from tasks.worker.default_middleware import of
from tasks.worker.sqs_messages import message_id, receive_count


class SQSRequest(Request):
    def __init__(self, message, *args, **kwargs):
        # A middleware may give the body (the claim check: arguments kept in S3), before the
        # job's schema check; what it raises (PayloadUnavailable) propagates to the consumer,
        # which rejects the message.
        app = kwargs.get("app") or kwargs["task"].app
        headers = kwargs.get("headers") or message.headers or {}
        body = of(app).message_body(message, headers)
        if body is not None:
            kwargs.update(body=body, decoded=True)
        super().__init__(message, *args, **kwargs)
        # Becomes `task.request.delivery_count` in the pool process, where the
        # backend records it as the job's `attempts`.
        request_dict(self)["delivery_count"] = receive_count(message)
        # This delivery's run token: the STARTED write takes the job's run lease with it, the
        # heartbeat renews it (tasks.results.run_lease, tasks.worker.lease_heartbeat).
        fields = request_dict(self)
        # A Celery retry's message carries the retrying run's token (Task.retry copies the
        # request's custom headers): that run, and only it, hands the lease over to it.
        sent_by = fields.get("run_token")
        retries = fields.get("retries")
        fields["retry_of"] = (
            sent_by
            if isinstance(sent_by, str) and isinstance(retries, int) and retries > 0
            else None
        )
        fields["run_token"] = run_token(message_id(message), receive_count(message))

    def on_accepted(self, pid, time_accepted):
        super().on_accepted(pid, time_accepted)
        of(self.app).dispatch("job_started", self)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        # Before Celery acks or hands back the message: a lost run's record and callback
        # must be written first (tasks.worker.worker_lost, tasks.worker.completion_callbacks).
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # billiard's wrapper
        lost = isinstance(exc, WorkerLostError | Terminated)
        of(self.app).dispatch("run_lost" if lost else "run_failed", self, exc)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def acknowledge(self):
        first = not self.acknowledged
        super().acknowledge()
        if first:
            of(self.app).dispatch("job_finished", self, "ack")

    def reject(self, requeue=False):
        first = not self.acknowledged
        super().reject(requeue=requeue)
        if first:
            of(self.app).dispatch("job_finished", self, "requeue" if requeue else "reject")
