"""The HTTP API against its own OpenAPI document, checked by an outside fuzzer (issue 17, 9).

Schemathesis (its CLI: the coverage, fuzzing and stateful phases) reads /openapi.json from the
shim served by gunicorn, with moto's server behind it, and judges every answer with its default
checks: no server error; only documented statuses, content types, headers and bodies; data the
document refuses is refused (negative_data_rejection) and data it admits is accepted
(positive_data_acceptance); a missing or wrong API key is refused (ignored_auth); a missing
required header is refused. The seed is fixed and generation deterministic: CI sends the same
requests every run (its full report: test-output/schemathesis-conformance.txt).

The shim runs with an API key and the names of an `ecs` stack, so the document it serves is the
one `python -m ecs deploy` imports into API Gateway for that stack: a test compares them.

Left out, each for a reason:
* use_after_free: DELETE /jobs/{job_id} is Celery's revoke, not a deletion. The record stays,
  and GET answers it REVOKED (docs/http-api.md); the check wants a 404 after any DELETE.
* unsupported_method (405 with Allow for a method a resource does not declare): API Gateway
  answers such a request as it answers an unknown path, with its MISSING_AUTHENTICATION_TOKEN
  gateway response, which the document maps to 404 {"message": "Not Found"}
  (docs/http-api.md, "unknown route or method"; test_api_parity.py). The undeclared methods
  are still sent, and every other check holds for their answers.
* A random cursor in valid data: a cursor is opaque. The document gives its form, and one not
  of that form must be refused (negative data, checked); but only a cursor the API issued is a
  position, so `before_call` below swaps the well-formed random cursor of a valid request for
  one the API issues (the start of a shard). Examples phase: the document has no examples.
* The delay headers of a POST: Delay-Seconds, X-Countdown and Eta exclude one another, and an
  Eta must name a real day at most ten years after the request, which a header's pattern
  cannot say (the document says it in words; test_delay_template.py checks the 400s). So
  `before_call` keeps one of them in a valid request, and makes its Eta a real time.

This module is also the hooks module Schemathesis imports (SCHEMATHESIS_HOOKS): its top level
imports nothing from the project.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "test-output" / "schemathesis-conformance.txt"
SEED = 20261206
# Per operation and phase: 23 operations, about 1,100 requests, ~25 s on 2 idle cores.
MAX_EXAMPLES = 20
API_KEY = "conformance-key"
# `deterministic` derandomizes Hypothesis (every phase draws the same cases each run); the
# seed fixes anything else; one worker keeps the order of requests, and so the records, fixed.
CONFIG = f"""
seed = {SEED}
workers = 1
request-timeout = 20
continue-on-failure = true

[auth.openapi.api_key]
api_key = "{API_KEY}"

[cache]
enabled = false  # no failures replayed from an earlier run: every run the same

[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true
database = "none"

[checks.use_after_free]
enabled = false

[checks.unsupported_method]
enabled = false
"""


def shard_start(shard: int) -> str:
    """The cursor GET /jobs issues for the start of a shard (list_jobs.response.vtl)."""
    return base64.urlsafe_b64encode(f"v1|{shard}||".encode()).decode().rstrip("=")


ISSUED = frozenset({shard_start(0)})  # one shard a status (JOBS_LIST_SHARDS=1)


DELAY_HEADERS = ("Delay-Seconds", "X-Countdown", "Eta")


def one_delay_header(case: Any) -> None:
    """A valid POST carries at most one delay header, and an Eta that is a real time."""
    meta = case.meta
    headers = case.headers or {}
    if meta is None or not meta.generation.mode.is_positive:
        return
    given = [name for name in DELAY_HEADERS if name in headers]
    for name in given[1:]:
        del headers[name]
    if given[:1] == ["Eta"]:
        headers["Eta"] = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A valid GET /jobs carries a cursor the API issued, never a random well-formed one;
    a valid POST one delay header at most."""
    if case.method.upper() == "POST" and case.operation.path.startswith("/tasks/"):
        one_delay_header(case)
        return
    if case.method.upper() != "GET" or case.operation.path != "/jobs":
        return
    meta = case.meta
    cursor = (case.query or {}).get("cursor")
    if meta is None or not meta.generation.mode.is_positive or not cursor or cursor in ISSUED:
        return
    case.query["cursor"] = shard_start(0)


@dataclasses.dataclass
class Served:
    url: str
    stack: Any  # the ecs.stack.Stack whose names the shim uses


@pytest.fixture(scope="module")
def served(moto_server: str) -> Iterator[Served]:
    """gunicorn serving the shim with an API key, on a queue, table and bucket of their own
    (the fuzzer's jobs disturb no other test), named as `ecs` names a stack's."""
    from ecs.stack import Stack
    from tasks.ops.provision import provision
    from tasks.ops.settings import EMULATOR_ACCOUNT_ID, Settings
    from tests.conftest import RUN_ID, STACK_ENV
    from tests.http_shim import running_shim

    stack = Stack(name=f"conformance-{RUN_ID}", region="us-east-1", account_id=EMULATOR_ACCOUNT_ID)
    provision(
        dataclasses.replace(
            Settings.from_env(),
            queue_name=stack.queue_name,
            dlq_name=stack.dlq_name,
            table_name=stack.table_name,
            bucket_name=stack.bucket_name,
        )
    )
    env = {
        **os.environ,
        **STACK_ENV,
        "JOBS_QUEUE_NAME": stack.queue_name,
        "JOBS_DLQ_NAME": stack.dlq_name,
        "JOBS_TABLE_NAME": stack.table_name,
        "JOBS_BUCKET": stack.bucket_name,
        "JOBS_API_KEYS": API_KEY,
    }
    env.pop("JOBS_QUEUE_URL", None)
    with running_shim(env, "conformance") as shim:
        yield Served(shim.url, stack)


def failures_of(output: str, limit: int = 12_000) -> str:
    """The report's failures and summary, long lines (a 2 KB header, a body) cut."""
    start = output.find("FAILURES")
    text = output[start:] if start >= 0 else output
    return "\n".join(line[:400] for line in text.splitlines())[-limit:]


@pytest.mark.integration
def test_the_api_answers_as_its_openapi_document_says(served: Served, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": __name__, "PYTHONPATH": path, "NO_COLOR": "1"}
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{served.url}/openapi.json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(output, encoding="utf-8")
    assert run.returncode == 0, f"schemathesis ({took:.0f} s):\n{failures_of(output)}"
    # Every operation of the document was tested, none dropped for a schema it cannot read.
    selected = re.search(r"Selected:\s+(\d+)/(\d+)", output)
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert selected and tested, output[-3000:]
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) >= 20, output[-3000:]


@pytest.mark.integration
def test_the_deployed_document_is_the_one_served(served: Served) -> None:
    """What `ecs` imports into API Gateway for the stack is what the shim served the fuzzer:
    only the integrations' role (the shim signs with its own credentials) and the title
    differ."""
    from ecs.api import build_definition
    from tests.http_shim import http

    answer = http("GET", f"{served.url}/openapi.json")
    assert answer.status == 200
    deployed = build_definition(served.stack)
    role = served.stack.role_arn(served.stack.api_role)
    assert answer.body["info"].pop("title") == "sqs-jobs"
    assert deployed["info"].pop("title") == served.stack.api_name
    roles = set()
    for document in (answer.body, deployed):
        for path in document["paths"].values():
            for operation in path.values():
                integration = operation["x-amazon-apigateway-integration"]
                if "credentials" in integration:
                    roles.add(integration.pop("credentials"))
    assert role in roles and len(roles) == 2
    assert answer.body == deployed


@pytest.mark.parametrize(
    ("name", "templates"),
    [
        (
            "UUID_REGEX",
            [
                "send_task.request",
                "send_task.response",
                "send_task.error",
                "get_job.request",
                "get_job.response",
                "revoke_job.request",
                "revoke_job.response",
                "get_job_result.error",
            ],
        ),
        ("HTTPS_URL_REGEX", ["send_task.request", "send_task.response", "send_task.error"]),
        ("LOCAL_URL_REGEX", ["send_task.request", "send_task.response", "send_task.error"]),
        ("DELAY_SECONDS_REGEX", ["send_task.request", "send_task.response", "send_task.error"]),
        ("ETA_REGEX", ["send_task.request", "send_task.response", "send_task.error"]),
        ("TASK_FILTER_REGEX", ["list_jobs.request", "list_jobs.response"]),
        ("SINCE_REGEX", ["list_jobs.request", "list_jobs.response"]),
        ("CURSOR_FORM_REGEX", ["list_jobs.request", "list_jobs.response"]),
    ],
)
def test_the_documents_patterns_are_the_templates_checks(name: str, templates: list[str]):
    """Each form the document states is the very regex its templates match values against
    (String.matches: the whole value), so the two cannot drift apart."""
    from tasks.http_contract import forms, mapping_templates

    regex = getattr(forms, name)
    for template in templates:
        assert f".matches('{regex}')" in mapping_templates.load_template(template), (name, template)
