"""The worker-side request: SQS delivery facts into the task's context, and the
middleware's job hooks (started, finished)."""

from __future__ import annotations

from tasks.callbacks.attempt import deliver_after_lost_run
from tasks.results.run_lease import run_token
from tasks.worker import middleware
from tasks.worker.celery_private import Request, request_dict
from tasks.worker.claim_check import HEADER as PAYLOAD_HEADER
from tasks.worker.claim_check import claimed_body
from tasks.worker.sqs_messages import message_id, receive_count
from tasks.worker.worker_lost import record_if_final_loss


class SQSRequest(Request):
    def __init__(self, message, *args, **kwargs):
        # Arguments kept in S3 (payload_ref): the decoded body with them, before the job's
        # schema check; PayloadUnavailable propagates to the consumer, which rejects.
        headers = kwargs.get("headers") or message.headers or {}
        if PAYLOAD_HEADER in headers:
            kwargs.update(body=claimed_body(headers, message.payload), decoded=True)
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
        fields["retry_of"] = (sent_by if isinstance(sent_by, str) and isinstance(retries, int)
                              and retries > 0 else None)
        fields["run_token"] = run_token(message_id(message), receive_count(message))

    def on_accepted(self, pid, time_accepted):
        super().on_accepted(pid, time_accepted)
        middleware.dispatch("job_started", self)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        # Still handed back as Celery does; on the last delivery the record says why.
        record_if_final_loss(self, exc_info.exception)
        deliver_after_lost_run(self, exc_info.exception)  # before Celery acks it
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)

    def acknowledge(self):
        first = not self.acknowledged
        super().acknowledge()
        if first:
            middleware.dispatch("job_finished", self, "ack")

    def reject(self, requeue=False):
        first = not self.acknowledged
        super().reject(requeue=requeue)
        if first:
            middleware.dispatch("job_finished", self, "requeue" if requeue else "reject")
