"""`python -m ecs console`: the operator's console (console/) over a deployed stack, served on
127.0.0.1 with the operator's own credentials. Nothing new is exposed: the process listens on
loopback only, and does what those credentials allow (ecs/console-policy.json: the read-only
rights it needs, and its actions').
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from string import Template

from console.sources import AwsSource, Names
from ecs import alarms
from ecs.stack import Stack
from tasks.ops.settings import Settings

POLICY_TEMPLATE = Path(__file__).with_name("console-policy.json")
DEFAULT_PORT = 8001


def console_source(clients, stack: Stack) -> AwsSource:
    """The stack's queue, DLQ, table, service and alarms, read with `clients`; its schedule
    group, where a cancelled deferred job's one-time schedule is deleted."""
    worker = stack.worker_settings()
    return AwsSource(
        Names(
            queue=stack.queue_name,
            dlq=stack.dlq_name,
            table=stack.table_name,
            cluster=stack.cluster,
            service=stack.service,
            alarms=tuple(alarms.alarm_names(stack)),
        ),
        lambda: clients.sqs,
        lambda: clients.dynamodb,
        Settings.from_env().result_expires,
        ecs=lambda: clients.ecs,
        cloudwatch=lambda: clients.cloudwatch,
        settings=worker,
        scheduler=lambda: clients.scheduler,
        metrics_namespace=worker.metrics_namespace,
    )


def console_policy(stack: Stack) -> dict:
    """The console's IAM policy for this stack (the template's ${...} filled in)."""
    return json.loads(
        Template(POLICY_TEMPLATE.read_text()).substitute(
            Partition=stack.partition,
            Region=stack.region,
            Account=stack.account_id,
            Stack=stack.name,
            ScheduleGroup=stack.schedule_group,
        )
    )


def serve(clients, stack: Stack, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve the console on 127.0.0.1:`port` until interrupted."""
    from werkzeug.serving import make_server

    from console.app import create_app

    server = make_server("127.0.0.1", port, create_app(console_source(clients, stack)), True)
    echo(
        f"console of stack {stack.name} in {stack.region}: "
        f"http://127.0.0.1:{server.server_port}/console/ (Ctrl-C stops it)"
    )
    server.serve_forever()
