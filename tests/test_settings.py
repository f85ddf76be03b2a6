"""Configuration touches nothing it does not own; the shim and `ecs` load no worker runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

# A Python service on AWS: real-looking credentials, no JOBS_TARGET, its own queue URL.
SERVICE_ENV = {
    "PATH": os.environ.get("PATH", ""),
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_REGION": "eu-west-1",
    "JOBS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/111122223333/jobs",
}


def run(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_jobs_and_the_app_leaves_the_environment_as_it_was():
    code = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "import tasks, celeryconfig\n"
        "from tasks.text import analyze\n"
        "app = tasks.app\n"
        "backend = app.backend\n"
        "conn = app.connection_for_write(); channel = conn.default_channel\n"
        "sqs = channel.sqs(queue=app.conf.task_default_queue)\n"
        "print(json.dumps({'changed': sorted(k for k in set(before) | set(os.environ)\n"
        "                   if before.get(k) != os.environ.get(k)),\n"
        "                  'sqs': sqs.meta.endpoint_url,\n"
        "                  'dynamodb': backend.client.meta.endpoint_url}))\n"
    )
    seen = run(code, SERVICE_ENV)
    assert seen["changed"] == []
    # boto3's own resolution: AWS's endpoints, never the local emulator.
    assert seen["sqs"] == "https://sqs.eu-west-1.amazonaws.com"
    assert seen["dynamodb"] == "https://dynamodb.eu-west-1.amazonaws.com"


def test_the_emulator_is_used_only_when_asked_for():
    code = (
        "import json; from tasks.ops.settings import Settings; s = Settings.from_env();"
        "print(json.dumps([s.target, s.sqs_endpoint, s.access_key_id]))"
    )
    assert run(code, SERVICE_ENV) == ["aws", None, None]
    local = {**SERVICE_ENV, "JOBS_TARGET": "local"}
    local.pop("AWS_ACCESS_KEY_ID")
    assert run(code, local) == ["local", "http://127.0.0.1:4566", "testing"]
    explicit = {**local, "AWS_ENDPOINT_URL": "http://127.0.0.1:4999"}
    assert run(code, explicit)[1] == "http://127.0.0.1:4999"


def test_importing_the_config_makes_no_network_call():
    # No JOBS_QUEUE_URL and no endpoint: the URL is asked of SQS only when a channel opens.
    env = {k: v for k, v in SERVICE_ENV.items() if k != "JOBS_QUEUE_URL"}
    env["JOBS_TARGET"] = "aws"
    code = (
        "import json, celeryconfig, tasks; tasks.app.conf.broker_transport_options;"
        "entry = celeryconfig.broker_transport_options['predefined_queues']['jobs'];"
        "print(json.dumps(dict(entry)))"
    )
    assert run(code, env) == {}


def test_a_wrong_target_is_a_clear_error():
    out = subprocess.run(
        [sys.executable, "-c", "from tasks.ops.settings import Settings;Settings.from_env()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**SERVICE_ENV, "JOBS_TARGET": "prod"},
        timeout=60,
    )
    assert out.returncode != 0 and "JOBS_TARGET must be 'aws' or 'local'" in out.stderr


def test_the_shim_and_the_deployer_read_job_schemas_without_the_worker_runtime():
    code = (
        "import json, sys\n"
        "from tasks.http_contract.openapi import build_openapi\n"
        "from tasks.jobkit.registry import public_jobs\n"
        "import ecs.cli\n"
        "assert 'tasks.text.analyze' in public_jobs()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tasks.worker')\n"
        "                        or m.startswith('celery.worker.consumer'))))\n"
    )
    assert run(code, {**SERVICE_ENV, "JOBS_TARGET": "local"}) == []


def test_test_only_jobs_are_not_in_the_production_registry():
    code = (
        "import json; from tasks.jobkit.registry import all_jobs;"
        "print(json.dumps(sorted(all_jobs())))"
    )
    names = run(code, SERVICE_ENV)
    assert "tasks.text.analyze" in names
    assert not [n for n in names if n.startswith("tests.")]
