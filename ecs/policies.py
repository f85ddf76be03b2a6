"""IAM documents: who may assume each role, exactly what each role may do, and the
permissions boundary that caps every role of the stack.

Every statement names this stack's resources. A wildcard appears only where AWS offers
nothing narrower, and each such place says so; tests/test_ecs_iam.py holds the list.
"""

from __future__ import annotations

from dataclasses import replace

from ecs.stack import Stack
from tasks.ops.provision import LIST_INDEX

VERSION = "2012-10-17"

# Worker's SQS calls (kombu's transport, the visibility heartbeat, retries that re-send).
WORKER_QUEUE_ACTIONS = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
]
# The DLQ is only looked up and read for its depth by the worker; redrive runs from `ecs`.
WORKER_DLQ_ACTIONS = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
# The claim check (tasks.results.large_objects): results and arguments, by key, in their
# two prefixes only; no ListBucket (a missing key is then a 403, which readers expect).
WORKER_OBJECT_ACTIONS = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
WORKER_TABLE_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
]


ECS_TASKS = "ecs-tasks.amazonaws.com"
API_GATEWAY = "apigateway.amazonaws.com"
SCHEDULER = "scheduler.amazonaws.com"
# The service whose resources assume each principal's roles: aws:SourceArn names them.
_SOURCE_SERVICE = {ECS_TASKS: "ecs", API_GATEWAY: "execute-api"}


def trust(service: str, stack: Stack) -> dict:
    """Who may assume a role: the service, and only on behalf of this account's resources
    in this region (aws:SourceAccount and aws:SourceArn: the confused-deputy guard AWS
    recommends, so that no other account's task or API can be made to use the role)."""
    source = f"arn:{stack.partition}:{_SOURCE_SERVICE[service]}:{stack.region}:{stack.account_id}:*"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": stack.account_id},
                    "ArnLike": {"aws:SourceArn": source},
                },
            }
        ],
    }


def scheduler_trust(stack: Stack) -> dict:
    """EventBridge Scheduler, for this account's schedules in this stack's group only (the
    condition its confused-deputy page recommends: aws:SourceArn of the schedule group)."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": SCHEDULER},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": stack.account_id},
                    "ArnLike": {"aws:SourceArn": stack.schedule_group_arn},
                },
            }
        ],
    }


def scheduler_policy(stack: Stack) -> dict:
    """A schedule's execution role: send to the work queue, and its failed deliveries to the
    DLQ (EventBridge Scheduler sends dead-letter events with the execution role too)."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "FireJobs",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": stack.queue_arn,
            },
            {
                "Sid": "DeadLetters",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": stack.dlq_arn,
            },
        ],
    }


def execution_policy(stack: Stack) -> dict:
    """What ECS itself needs to start the container: pull the image, write the logs."""
    return {
        "Version": VERSION,
        "Statement": [
            # ecr:GetAuthorizationToken has no resource type: AWS requires "*" here.
            {
                "Sid": "RegistryLogin",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": stack.repository_arn,
            },
            # Log streams are named by ECS per task at run time: the streams of this group only.
            {
                "Sid": "WriteLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{stack.log_group_arn}:log-stream:*",
            },
            # ECS `secrets`: the completion callbacks' HMAC key into JOBS_CALLBACK_SECRET.
            {
                "Sid": "CallbackSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": stack.callback_secret_arn_pattern,
            },
        ],
    }


def task_policy(stack: Stack) -> dict:
    """What the worker's code calls: its queue, its table, its own scale-in protection."""
    statements = [
        {
            "Sid": "Queue",
            "Effect": "Allow",
            "Action": WORKER_QUEUE_ACTIONS,
            "Resource": stack.queue_arn,
        },
        {
            "Sid": "DeadLetterQueue",
            "Effect": "Allow",
            "Action": WORKER_DLQ_ACTIONS,
            "Resource": stack.dlq_arn,
        },
        {
            "Sid": "JobRecords",
            "Effect": "Allow",
            "Action": WORKER_TABLE_ACTIONS,
            "Resource": stack.table_arn,
        },
        {
            "Sid": "LargeResultsAndArguments",
            "Effect": "Allow",
            "Action": WORKER_OBJECT_ACTIONS,
            "Resource": [f"{stack.bucket_arn}/results/*", f"{stack.bucket_arn}/payloads/*"],
        },
        # tasks.worker.deferral: a job due more than 15 minutes ahead waits in a one-time
        # schedule of the stack's group (named job-<id>-<retries>: created by the worker,
        # deleted by it when the job's record is past waiting); never the recurring ones.
        {
            "Sid": "DeferJobs",
            "Effect": "Allow",
            "Action": ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"],
            "Resource": stack.deferred_schedules_arn_pattern,
        },
        # CreateSchedule names the role EventBridge Scheduler sends with: that role only, and
        # only to EventBridge Scheduler.
        {
            "Sid": "PassSchedulerRole",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": stack.role_arn(stack.scheduler_role),
            "Condition": {"StringEquals": {"iam:PassedToService": SCHEDULER}},
        },
        # Task ids exist only at run time: the tasks of this cluster, nothing else.
        {
            "Sid": "ScaleInProtection",
            "Effect": "Allow",
            "Action": ["ecs:UpdateTaskProtection"],
            "Resource": stack.task_arn_pattern,
        },
        # tasks.worker.protection: a worker whose deployment is no longer the service's
        # primary stops taking jobs and releases protection, so deploys can finish.
        {
            "Sid": "OwnDeployment",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks"],
            "Resource": stack.task_arn_pattern,
        },
        {
            "Sid": "OwnService",
            "Effect": "Allow",
            "Action": ["ecs:DescribeServices"],
            "Resource": stack.service_arn,
        },
    ]
    if stack.options.enable_exec:
        # ECS Exec's Session Manager channels have no resource type: AWS requires "*".
        statements.append(
            {
                "Sid": "EcsExec",
                "Effect": "Allow",
                "Action": [
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": "*",
            }
        )
    return {"Version": VERSION, "Statement": statements}


# The rights the API and a Python client both have, one statement each.
def submit_jobs_statement(stack: Stack) -> dict:
    """Send to the work queue (POST /jobs, tasks.client's apply_async)."""
    return {
        "Sid": "SubmitJobs",
        "Effect": "Allow",
        "Action": ["sqs:SendMessage"],
        "Resource": stack.queue_arn,
    }


def list_jobs_statement(stack: Stack) -> dict:
    """GET /jobs: Query of the listing index only (never the table, never a Scan)."""
    return {
        "Sid": "ListJobs",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": f"{stack.table_arn}/index/{LIST_INDEX}",
    }


def read_large_results_statement(stack: Stack) -> dict:
    """GET /jobs/{id}/result: one result object; never the arguments, never a listing."""
    return {
        "Sid": "ReadLargeResults",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": f"{stack.bucket_arn}/results/*",
    }


def api_policy(stack: Stack) -> dict:
    """API Gateway's integrations: send to the queue, read one job record, revoke one job
    (DELETE /jobs/{id}: one conditional UpdateItem, the revoke_job.request template of
    tasks/http_contract/templates)."""
    return {
        "Version": VERSION,
        "Statement": [
            submit_jobs_statement(stack),
            {
                "Sid": "ReadJobs",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem"],
                "Resource": stack.table_arn,
            },
            {
                "Sid": "RevokeJobs",
                "Effect": "Allow",
                "Action": ["dynamodb:UpdateItem"],
                "Resource": stack.table_arn,
            },
            list_jobs_statement(stack),
            read_large_results_statement(stack),
        ],
    }


# What a Python service that submits and follows jobs calls (tasks.client): send, read,
# revoke, list; large arguments and results through the claim check.
CLIENT_TABLE_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"]


def client_policy(stack: Stack) -> dict:
    """For the roles of applications that submit jobs from Python (not a role of the
    stack: their administrator attaches it). Beside the API's rights, revoke() of a job
    waiting in a one-time schedule (tasks.results.control) deletes that schedule: the
    stack's deferred-job schedules only (job-*), never the recurring ones, and no
    CreateSchedule (only workers defer)."""
    return {
        "Version": VERSION,
        "Statement": [
            submit_jobs_statement(stack),
            {
                "Sid": "ReadAndRevokeJobs",
                "Effect": "Allow",
                "Action": CLIENT_TABLE_ACTIONS,
                "Resource": stack.table_arn,
            },
            list_jobs_statement(stack),
            {
                "Sid": "LargeArguments",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": f"{stack.bucket_arn}/payloads/*",
            },
            read_large_results_statement(stack),
            {
                "Sid": "CancelDeferredJobs",
                "Effect": "Allow",
                "Action": ["scheduler:DeleteSchedule"],
                "Resource": stack.deferred_schedules_arn_pattern,
            },
        ],
    }


def roles(stack: Stack) -> list[tuple[str, str, dict]]:
    """(role name, trusted service, inline policy) for every role of the stack."""
    return [
        (stack.execution_role, ECS_TASKS, execution_policy(stack)),
        (stack.task_role, ECS_TASKS, task_policy(stack)),
        (stack.api_role, API_GATEWAY, api_policy(stack)),
    ]


def boundary_name(stack: Stack) -> str:
    return f"{stack.name}-boundary"


def boundary_arn(stack: Stack) -> str:
    return f"arn:{stack.partition}:iam::{stack.account_id}:policy/{boundary_name(stack)}"


def boundary_policy(stack: Stack) -> dict:
    """The permissions boundary every role of the stack is created with: the most any of
    them may ever do, whatever its own policy says. It is the union of the roles' own
    policies (ECS Exec's channels included, so that --enable-exec needs no new boundary),
    so it depends on the stack's name, account, region and partition only. Whoever holds
    the deployer policy may neither change it nor take it off a role
    (ecs/deployer-policy.json): through the roles they can reach these permissions, no more.
    """
    full = replace(stack, options=replace(stack.options, enable_exec=True))
    statements = []
    for role, policy in (
        ("Execution", execution_policy(full)),
        ("Task", task_policy(full)),
        ("Api", api_policy(full)),
        ("Scheduler", scheduler_policy(full)),
    ):
        statements += [{**s, "Sid": role + s["Sid"]} for s in policy["Statement"]]
    return {"Version": VERSION, "Statement": statements}
