"""The machinery that runs jobs on SQS: loaded by `celery worker` only.

`consumer` is the entry point (celeryconfig's `worker_consumer`); it adds the
worker's steps. Nothing here is imported by a process that only submits jobs.

Every cross-cutting concern is a middleware (`middleware/`: the hooks, the app's list
`app.middleware`, the default order): the message gate (`gate/`), the claim check
(`claim_check`), the rejection and lost-run records (`rejection_record`, `worker_lost`),
completion callbacks (`completion_callbacks`), health (`liveness`), the visibility and
run-lease heartbeats, the shutdown deadline, scale-in protection (`protection/`), metrics
and revoke with terminate. `consumer` and `request` are the thin Celery subclasses that
call the hooks; `channel` and `transport` are kombu's SQS transport as we need it. Celery's
private names are reached through tasks.celery_private only.
"""
