"""Jobs for tests/test_deferral_done_when.py (loaded through JOBS_EXTRA_MODULES, never in
production).

`held_requests` answers what `celery inspect reserved` / `active` would, which SQS cannot
carry (no broadcast): the requests the worker's own state (celery.worker.state) holds,
reserved, scheduled for an eta, or running, other than this one. It must run in the
consumer's process: a worker with `-P solo` (or threads), not prefork's children.
"""

from __future__ import annotations

from tasks.celery_private import held_requests as worker_held_requests
from tasks.jobkit.registry import job


@job(schema={"type": "object", "properties": {}}, public=False)
def held_requests(self) -> list[str]:
    """The job ids this worker holds, besides this job."""
    return sorted(r.id for r in worker_held_requests() if r.id != self.request.id)


@job(
    schema={
        "type": "object",
        "properties": {"countdown": {"type": "number"}, "sqs_delay": {"type": "boolean"}},
    },
    public=False,
    max_retries=3,
)
def retry_later(self, countdown: float, sqs_delay: bool = True) -> int:
    """Retried once after `countdown` seconds, then returns its retries. `sqs_delay=False`
    asks for no DelaySeconds (kombu's property), so a short countdown takes the long path
    of a worker that defers past a few seconds, as one over 15 minutes does."""
    if self.request.retries == 0:
        options = {} if sqs_delay else {"DelaySeconds": 0}
        raise self.retry(exc=RuntimeError("first attempt"), countdown=countdown, **options)
    return self.request.retries
