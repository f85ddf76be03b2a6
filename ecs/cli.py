"""Command line of `python -m ecs`: deploy, plan, status, logs, dlq, redrive, destroy,
iam-policy, console."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ecs.retry import REAL_CLOCK, Clock
from ecs.stack import Options, Stack, default_stack_name
from tasks.ops.settings import Settings, configured_region

DESCRIPTION = """Deploy the jobs system (queue, table, Fargate workers, REST API) to AWS,
watch it, and remove it. Credentials and region come from boto3's usual sources."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        default=default_stack_name(),
        help="stack name; every resource is named and tagged from it "
        "(default: $JOBS_STACK or sqs-jobs)",
    )
    parser.add_argument(
        "--region", default=None, help="AWS region (default: $AWS_REGION / your AWS configuration)"
    )


def _deploy_options(parser: argparse.ArgumentParser) -> None:
    d = Options()
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be created, updated or left alone; change nothing",
    )
    parser.add_argument(
        "--calls",
        action="store_true",
        help="with plan or --dry-run: the AWS calls of each step as well",
    )
    parser.add_argument("--image", help="deploy this image URI instead of building one")
    parser.add_argument("--cpu", type=int, default=d.cpu, help="task CPU units (default 512)")
    parser.add_argument("--memory", type=int, default=d.memory, help="task MiB (default 1024)")
    parser.add_argument("--architecture", choices=["X86_64", "ARM64"], default=d.architecture)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=d.concurrency,
        help="worker processes per task (default 2)",
    )
    parser.add_argument(
        "--subnets", default="", help="comma-separated private subnets (default: the default VPC's)"
    )
    parser.add_argument(
        "--enable-exec",
        action="store_true",
        help="allow `aws ecs execute-command` into the workers",
    )
    parser.add_argument("--no-spot", action="store_true", help="regular Fargate only")
    parser.add_argument("--min-tasks", type=int, default=d.min_tasks, help="default 0")
    parser.add_argument("--max-tasks", type=int, default=d.max_tasks, help="default 10")
    parser.add_argument(
        "--acceptable-latency",
        type=float,
        default=d.acceptable_latency,
        help="seconds a job may wait before it starts (default 300)",
    )
    parser.add_argument(
        "--seconds-per-job",
        type=float,
        default=d.seconds_per_job,
        help="seconds one task takes per job (default 2); the scaling target "
        "is acceptable latency / seconds per job messages per task",
    )
    parser.add_argument(
        "--log-retention",
        type=int,
        default=d.log_retention_days,
        help="days to keep worker logs (default 14)",
    )
    parser.add_argument("--visibility-timeout", type=int, default=d.visibility_timeout)
    parser.add_argument(
        "--list-shards",
        type=int,
        choices=range(1, 17),
        default=d.list_shards,
        metavar="1-16",
        help="listing index partitions per status (default 1: GET /jobs pages are the newest "
        "jobs; more only above ~1,000 finished jobs/s of one status)",
    )
    parser.add_argument(
        "--rollout-timeout",
        type=float,
        default=d.rollout_timeout,
        help="seconds to wait for the service to be stable (default 900)",
    )
    parser.add_argument(
        "--smoke-timeout",
        type=float,
        default=d.smoke_timeout,
        help="seconds the smoke task may take to be healthy (default 600)",
    )
    parser.add_argument(
        "--max-message-age",
        type=int,
        default=d.max_message_age,
        help="alarm when a job has waited this many seconds (default 600)",
    )
    parser.add_argument(
        "--alarm-topic",
        default=None,
        help="SNS topic ARN the alarms notify (default: none; see status)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ecs", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    deploy = sub.add_parser(
        "deploy",
        help="create or update the whole stack",
        description="Create or update every resource, then print the URL.",
    )
    plan = sub.add_parser(
        "plan",
        help="what deploy would do (changes nothing)",
        description="Show what deploy would create, update or leave alone.",
    )
    for p in (deploy, plan):
        _common(p)
        _deploy_options(p)
    commands = {
        "status": "service, tasks, alarms, queue depth, oldest message, recent and failed jobs",
        "logs": "the workers' logs",
        "dlq": "the dead-letter queue's messages",
        "redrive": "move the dead-letter queue's messages back to the work queue",
        "destroy": "remove everything deploy made",
        "console": "the operator's console on 127.0.0.1 (docs/console.md)",
    }
    policy = sub.add_parser(
        "iam-policy",
        help="the IAM policies an administrator creates for this stack",
        description="Print (or write to --out) the stack's permissions boundary policy and "
        "the deployer's policies, rendered for this stack, account and region.",
    )
    _common(policy)
    policy.add_argument("--account", help="AWS account id (default: your credentials')")
    policy.add_argument(
        "--out",
        help="write NAME.json files into this directory and print "
        "the aws commands that create them",
    )
    for name, text in commands.items():
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _common(p)
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
            p.add_argument("--since", default="10m", help="how far back (10m, 2h, 1d)")
        if name == "console":
            p.add_argument("--port", type=int, default=8001, help="local port (default 8001)")
            p.add_argument(
                "--print-policy",
                action="store_true",
                help="print the IAM policy the console needs for this stack, and exit",
            )
        if name == "destroy":
            p.add_argument("--yes", "-y", action="store_true", help="do not ask")
            p.add_argument("--keep-data", action="store_true", help="keep the jobs table")
            p.add_argument(
                "--dry-run",
                action="store_true",
                help="show what would be deleted, with the calls; change nothing",
            )
    return parser


def options_from(args: argparse.Namespace, settings: Settings | None = None) -> Options:
    # The job modules are the deployer's (JOBS_MODULES): the image it builds holds them.
    job_modules = (settings or Settings.from_env()).job_modules
    if not hasattr(args, "cpu"):
        return Options(job_modules=job_modules)
    return Options(
        job_modules=job_modules,
        image=args.image,
        cpu=args.cpu,
        memory=args.memory,
        architecture=args.architecture,
        concurrency=args.concurrency,
        subnets=tuple(s.strip() for s in args.subnets.split(",") if s.strip()),
        enable_exec=args.enable_exec,
        min_tasks=args.min_tasks,
        max_tasks=args.max_tasks,
        acceptable_latency=args.acceptable_latency,
        seconds_per_job=args.seconds_per_job,
        log_retention_days=args.log_retention,
        visibility_timeout=args.visibility_timeout,
        list_shards=args.list_shards,
        spot=not args.no_spot,
        rollout_timeout=args.rollout_timeout,
        smoke_timeout=args.smoke_timeout,
        max_message_age=args.max_message_age,
        alarm_topic=args.alarm_topic,
    )


def _region(args) -> str:
    import boto3

    region = args.region or configured_region() or boto3.session.Session().region_name
    if not region:
        raise SystemExit("no region: pass --region or set AWS_REGION")
    return region


def main(
    argv: list[str] | None = None,
    *,
    clients=None,
    builder=None,
    confirm: Callable[[str], str] = input,
    echo: Callable[[str], None] = print,
    clock: Clock = REAL_CLOCK,
) -> int:
    args = build_parser().parse_args(argv)
    from ecs.clients import Clients

    try:
        options = options_from(args, Settings.from_env())
        options.backlog_target()
        clients = clients or Clients(_region(args))
        account = getattr(args, "account", None)  # iam-policy --account: no call to STS
        stack = Stack(
            args.stack,
            clients.region,
            account or clients.account_id(),
            options,
            partition="" if account else clients.partition(),
        )
        return _run(args, clients, stack, builder, confirm, echo, clock)
    except (ValueError, RuntimeError) as exc:
        echo(f"error: {exc}")
        return 2
    except (ClientError, BotoCoreError) as exc:
        echo(f"AWS error: {exc}")
        return 1
    except KeyboardInterrupt:  # `logs --follow`, or a deploy stopped half-way
        echo("interrupted (a half-made stack is completed by `deploy`, removed by `destroy`)")
        return 130


def _run(args, clients, stack: Stack, builder, confirm, echo, clock: Clock) -> int:
    from ecs import deploy, destroy, observe

    command = args.command
    if command == "plan" or (command == "deploy" and args.dry_run):
        echo(f"plan for stack {stack.name} in {stack.region} (nothing is changed)")
        deploy.show_plan(
            deploy.make_plan(clients, stack, builder, echo, clock), echo, calls=args.calls
        )
    elif command == "deploy":
        deploy.deploy(clients, stack, builder, echo, clock)
    elif command == "iam-policy":
        from ecs.deployer_policy import show

        show(stack, args.out, echo)
    elif command == "status":
        observe.status(clients, stack, echo)
    elif command == "logs":
        observe.logs(
            clients, stack, since=observe.parse_since(args.since), follow=args.follow, echo=echo
        )
    elif command in ("dlq", "redrive"):
        return _dead_letters(command, clients, stack, echo)
    elif command == "console":
        from ecs.console_cmd import console_policy, serve

        if args.print_policy:
            echo(json.dumps(console_policy(stack), indent=2))
            return 0
        serve(clients, stack, args.port, echo)
    elif command == "destroy":
        if args.dry_run:
            destroy.destroy(
                clients, stack, keep_data=args.keep_data, echo=echo, clock=clock, dry_run=True
            )
            return 0
        if not args.yes:
            what = "everything" if not args.keep_data else "everything but the jobs table"
            answer = confirm(
                f"Delete {what} of stack {stack.name} in {stack.region}? "
                f"Type the stack name to confirm: "
            )
            if answer.strip() != stack.name:
                echo("not confirmed; nothing deleted")
                return 1
        destroy.destroy(clients, stack, keep_data=args.keep_data, echo=echo, clock=clock)
    return 0


def _dead_letters(command: str, clients, stack: Stack, echo) -> int:
    from ecs.data import queue_url
    from tasks.ops.dlq import DeadLetter, peek, redrive

    dlq_url = queue_url(clients.sqs, stack.dlq_name)
    url = queue_url(clients.sqs, stack.queue_name)
    if dlq_url is None or url is None:
        echo(f"stack {stack.name} has no queues in {stack.region}: deploy it first")
        return 1
    if command == "dlq":
        letters: list[DeadLetter] = peek(clients.sqs, dlq_url)
        if not letters:
            echo("the dead-letter queue is empty")
            return 0
        echo(f"{'task id':38} {'task':32} receives")
        for letter in letters:
            echo(
                f"{letter.task_id or '(unreadable)':38} {letter.task or '(unknown)':32} "
                f"{letter.receive_count}"
            )
        echo(f"{len(letters)} message(s)")
        return 0
    moved = redrive(clients.sqs, clients.dynamodb, dlq_url, url, stack.table_name)
    echo(f"moved {moved} message(s) back to {stack.queue_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
