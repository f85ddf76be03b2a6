"""One configuration path: every variable the code reads is a Settings field, read in
tasks/ops/settings.py only, and the task definition's environment is Settings.to_env()."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from ecs.stack import Options, Stack
from tasks.ops.settings import DEFAULT_JOB_MODULES, Settings, variable_names, variables
from tests.conftest import ROOT

SCANNED = ("tasks", "api_shim", "ecs", "console", "celeryconfig.py")
SETTINGS_FILE = ROOT / "tasks" / "ops" / "settings.py"
# Variables the code names without reading them as its configuration. Documented exceptions:
# none today. (scripts/run_local.py's LOCAL_* knobs belong to that developer tool and are not
# scanned; boto3 reads its own variables itself, we never read them for it.)
NOT_SETTINGS: frozenset[str] = frozenset()
OS_ENVIRONMENT = ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")
ENV_NAME = re.compile(r"^(JOBS|WORKER|ECS|SHIM|AWS)_[A-Z0-9_]*[A-Z0-9]$")  # not f-string parts


def sources() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines that touch os.environ or call os.getenv / os.putenv (a WSGI request's
    `environ` is not the process environment)."""

    def touches(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return (
                node.attr in OS_ENVIRONMENT
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            )
        return (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in OS_ENVIRONMENT for a in node.names)
        )

    return [node.lineno for node in ast.walk(tree) if touches(node)]


def python_names(tree: ast.AST) -> set[str]:
    """The names a module binds (constants, imports, functions, classes)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def test_only_settings_reads_the_environment():
    found = {}
    for path in sources():
        if path == SETTINGS_FILE:
            continue
        lines = environment_reads(ast.parse(path.read_text(), str(path)))
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}, "read the variable through tasks.ops.settings.Settings instead"


def test_every_variable_named_in_the_code_is_a_settings_field():
    named = set()
    for path in sources():
        tree = ast.parse(path.read_text(), str(path))
        strings = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and ENV_NAME.match(node.value)
        }
        named |= strings - python_names(tree)  # `__all__` names constants, not variables
    assert named - variable_names() - NOT_SETTINGS == set()
    assert "JOBS_MODULES" in named  # the scan sees the names the fields declare


def test_every_field_is_documented_once():
    rows = variables()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names)) == len(dataclasses.fields(Settings))
    assert all(meaning for _, _, meaning in rows)


def test_settings_read_back_from_their_environment():
    local = Settings.from_env({"JOBS_TARGET": "local", "JOBS_QUEUE_NAME": "q"})
    assert local.dlq_name == "q-dlq" and local.access_key_id == "testing"
    assert Settings.from_env(local.to_env(everything=True)) == local
    every_value = Settings(
        target="aws",
        region="eu-west-3",
        sqs_endpoint="http://sqs:1",
        dynamodb_endpoint=None,
        s3_endpoint="http://s3:2",
        scheduler_endpoint="http://scheduler:4",
        ecs_endpoint="http://ecs:3",
        emulator_account_id="1",
        queue_name="a",
        queue_url="https://q/1/a",
        dlq_name="dead",
        table_name="t",
        bucket_name="b-payloads",
        defer_after=60,
        schedule_group="g-schedules",
        scheduler_role_arn="arn:aws:iam::1:role/g-scheduler",
        job_modules=("acme.jobs", "acme.more"),
        extra_job_modules=("tests.jobs",),
        visibility_timeout=60,
        max_receive_count=2,
        result_expires=3600,
        wait_time_seconds=0,
        ack_flush_interval=0.25,
        visibility_heartbeat=False,
        list_shards=4,
        list_running_after=2.5,
        concurrency=8,
        prefetch_multiplier=4,
        shutdown_deadline=30,
        heartbeat_file="/run/beat",
        heartbeat_max_age=12.5,
        metrics=True,
        metrics_namespace="acme",
        wait_trace="/tmp/waits.jsonl",
        wait_trace_every=8,
        pool_nice=3,
        pool="threads",
        ecs_agent_uri="http://agent",
        ecs_metadata_uri="http://meta",
        protection_minutes=7,
        protection_max_window=90.0,
        protection_cooldown=5.0,
        deployment_check_seconds=2.0,
        callback_secret="k",
        callback_allow=("10.0.0.0/8", "hooks.internal"),
        callback_max_attempts=3,
        callback_backoff=0.5,
        callback_max_delay=9.0,
        callback_deadline=60,
        api_keys=("k1", "k2"),
        shim_bind="127.0.0.1:9",
        shim_workers=4,
        stack_name="s",
    )
    # Every field but these differs from its default (credentials exist for `local` only).
    kept = {"target", "dynamodb_endpoint", "access_key_id", "secret_access_key"}
    defaults = Settings()
    assert {
        f.name
        for f in dataclasses.fields(Settings)
        if getattr(every_value, f.name) == getattr(defaults, f.name)
    } == kept
    assert Settings.from_env(every_value.to_env(everything=True)) == every_value


def test_the_task_definition_carries_no_secret_and_reads_back_as_the_stack():
    stack = Stack(
        "t1",
        "eu-west-1",
        "111122223333",
        Options(visibility_timeout=120, concurrency=4, job_modules=("acme.jobs",)),
    )
    env = stack.worker_environment()
    assert env == stack.worker_settings().to_env()
    seen = Settings.from_env(env)
    assert (seen.queue_name, seen.dlq_name, seen.table_name, seen.bucket_name) == (
        stack.queue_name,
        stack.dlq_name,
        stack.table_name,
        stack.bucket_name,
    )
    assert (seen.region, seen.queue_url, seen.target) == ("eu-west-1", stack.queue_url, "aws")
    assert (seen.visibility_timeout, seen.concurrency) == (120, 4)
    assert seen.job_modules == ("acme.jobs",)
    secret = {"JOBS_CALLBACK_SECRET", "JOBS_API_KEYS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert not secret & set(env)
    assert Stack("t2", "eu-west-1", "1").worker_settings().job_modules == DEFAULT_JOB_MODULES


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"JOBS_VISIBILITY_TIMEOUT": "soon"}, "JOBS_VISIBILITY_TIMEOUT must be an integer"),
        ({"JOBS_WAIT_TIME_SECONDS": "25"}, "JOBS_WAIT_TIME_SECONDS must be 0 to 20"),
        ({"JOBS_METRICS": "maybe"}, "JOBS_METRICS must be 'on' or 'off'"),
        ({"WORKER_HEARTBEAT_MAX_AGE": "0"}, "WORKER_HEARTBEAT_MAX_AGE must be at least 1"),
        ({"ECS_PROTECTION_COOLDOWN": "-1"}, "ECS_PROTECTION_COOLDOWN must be at least 0"),
    ],
)
def test_a_bad_value_is_a_clear_error_naming_the_variable(env, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        Settings.from_env(env)


def test_the_apps_keep_the_settings_they_were_made_from():
    from tasks.app_factory import create_app

    settings = dataclasses.replace(
        Settings.from_env({"JOBS_TARGET": "local"}), queue_name="made", result_expires=60
    )
    worker, client = create_app(settings), create_app(settings, role="client")
    for app in (worker, client):
        assert app.settings is settings
        assert app.conf.task_default_queue == "made" and app.conf.result_expires == 60
    assert client.conf.broker_transport == "tasks.client:Transport"
    assert Settings.of(worker) is settings
