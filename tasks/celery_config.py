"""Every Celery setting of the worker and the client, from `Settings` (tasks.ops.settings).

`celery_config(settings)` is what `tasks.app_factory.create_app` gives `app.conf`; the
top-level `celeryconfig` module holds the same names read from the environment, for those
who load it with `config_from_object("celeryconfig")`. Building it changes nothing in the
process environment: kombu's SQS client gets its endpoint and credentials from our channel
(tasks.worker.channel, tasks.client), which reads them from the Settings passed in the
transport options.
"""

from __future__ import annotations

from typing import Any

from tasks.ops.clients import QueueEntry
from tasks.ops.settings import Settings

# The transport option that carries the Settings to our kombu channels.
SETTINGS_OPTION = "jobs_settings"


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        # --- broker: SQS, with the queue owned by our provisioning code ---------------
        # The endpoint is not in the URL: our channel builds kombu's boto3 client from
        # Settings, so the same URL works on AWS, moto and LocalStack.
        "broker_url": "sqs://",
        "broker_transport_options": {
            "region": settings.region,
            # predefined_queues stops kombu from creating or listing queues: the queue,
            # its dead-letter queue and redrive policy come from tasks.ops.provision.
            "predefined_queues": {settings.queue_name: QueueEntry(settings)},
            "visibility_timeout": settings.visibility_timeout,
            # kombu sleeps polling_interval after every empty poll and whenever its
            # prefetch limit is full; long polling already waits server-side.
            "polling_interval": 0,
            "wait_time_seconds": settings.wait_time_seconds,
            "client-config": {"retries": {"mode": "standard", "max_attempts": 10}},
            "ack_flush_interval": settings.ack_flush_interval,
            # The receive count decides a rejected message's last receive; the sent time
            # gives the job's time waiting in the queue (tasks.worker.metrics).
            "fetch_message_attributes": {
                "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"]
            },
            SETTINGS_OPTION: settings,
        },
        "broker_connection_retry_on_startup": True,
        # kombu's SQS transport, but a message handed back (shutdown, lost pool process)
        # is visible again at once, a failed long poll (throttling, 5xx) is retried instead
        # of stopping the worker, and acknowledgements are deleted in batches of up to 10
        # (DeleteMessageBatch) within ack_flush_interval seconds.
        "broker_transport": "tasks.worker.transport:Transport",
        "task_default_queue": settings.queue_name,
        "task_create_missing_queues": False,
        # --- results: one DynamoDB item per job ---------------------------------------
        "result_backend": "tasks.results.backend:DynamoDBJobBackend",
        "result_expires": settings.result_expires,
        "result_extended": True,
        # After botocore's own retries, keep retrying lost connections and throttling
        # (tasks.results.backend.exception_safe_to_retry) so a short outage does not fail
        # a job.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "result_backend_max_sleep_between_retries_ms": 5000,
        "task_track_started": True,
        # --- serialisation: JSON only, pickle never -----------------------------------
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # --- delivery semantics on SQS ------------------------------------------------
        # Acknowledge after the task ran, so a crashed worker's job is redelivered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_concurrency": settings.concurrency,
        "worker_pool": settings.pool,  # `celery worker --pool` overrides it
        "worker_consumer": "tasks.worker.consumer:SafeConsumer",
        # SIGTERM is a warm shutdown; tasks.worker.shutdown cuts it off this many seconds
        # later (ECS's stopTimeout is 120 s: keep a margin for handing jobs back).
        # Celery itself applies it to cold shutdowns (SIGQUIT) only.
        "worker_soft_shutdown_timeout": settings.shutdown_deadline,
        # SQS cannot broadcast, so remote control (inspect, revoke, pings) and task
        # events (Flower) have nothing to travel on; left on, kombu would try to create
        # fanout queues. Health comes from a heartbeat file instead.
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
    }


def settings_of(transport_options: dict[str, Any]) -> Settings:
    """The Settings a channel was given (celery_config puts them in the transport options);
    a connection made without them (kombu used directly) reads the environment."""
    settings = transport_options.get(SETTINGS_OPTION)
    return settings if isinstance(settings, Settings) else Settings.from_env()
