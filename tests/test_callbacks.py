"""Completion callbacks end to end: a real worker, gunicorn, and a receiver on loopback.

The receiver verifies the signature exactly as the example in docs/callbacks.md does, and the
body is compared with what GET /jobs/{id} answers for the finished job (minus `callback`). A
receiver that keeps answering 500 is retried (short backoff in these tests) and given up
on, with the reason in the record. JOBS_TARGET=local: http to loopback is allowed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tasks.client import callback
from tests.conftest import launch_worker, wait_until
from tests.http_shim import Shim, http, running_shim
from tests.test_page import browser, page  # noqa: F401  (headless Chromium, when installed)

pytestmark = pytest.mark.integration

SECRET = "test-callback-secret"
WORKER_ENV = {
    "JOBS_CALLBACK_SECRET": SECRET,
    "JOBS_CALLBACK_MAX_ATTEMPTS": "3",
    "JOBS_CALLBACK_BACKOFF": "0.05",
    "JOBS_CALLBACK_MAX_DELAY": "0.2",
}


def readme_verify():
    """The docs' receiver check, read from docs/callbacks.md itself (its `def verify` block),
    so the example a reader copies is the one these tests run."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "callbacks.md").read_text()
    start = text.index("import hashlib, hmac, time\n")
    assert "def verify(" in text[start : text.index("```", start)]
    code = text[start : text.index("```", start)]
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/callbacks.md", "exec"), scope)  # our own document, not input
    return scope["verify"]


verify = readme_verify()


class Receiver:
    """A threaded HTTP server on 127.0.0.1: records every POST, answers `status`."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status: dict[str, int] = {}  # path -> status (200 by default)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.calls.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(receiver.status.get(self.path, 200))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def callback_worker(stack):
    worker = launch_worker(stack, "callbacks", 2, env=WORKER_ENV)
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "callbacks") as server:
        yield server


def callback_of(stack, job_id: str, state: str) -> dict | None:
    item = stack.item(job_id) or {}
    found = item.get("callback", {}).get("M", {})
    return found if found.get("state", {}).get("S") == state else None


def assert_signed_record(call: dict[str, Any], job_id: str, shim: Shim) -> dict:
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-job-id"] == job_id
    assert headers["user-agent"].startswith("sqs-jobs-callback/")
    assert verify(SECRET, call["body"], headers["x-signature"])
    assert not verify("another secret", call["body"], headers["x-signature"])
    sent = json.loads(call["body"])
    shown = shim.job(job_id)
    assert "callback" in shown and "url" not in shown["callback"]
    assert sent == {k: v for k, v in shown.items() if k != "callback"}
    return sent


def test_python_submission_gets_exactly_the_signed_record(stack, callback_worker, receiver, shim):
    from tasks.debug import add

    url = f"{receiver.url}/python?token=abc"
    job_id = add.apply_async(kwargs={"x": 2, "y": 3}, headers=callback(url)).id
    wait_until(lambda: receiver.to("/python?token=abc"), 30, message="the callback")
    done = wait_until(
        lambda: callback_of(stack, job_id, "delivered"),
        15,
        message="callback recorded as delivered",
    )
    [call] = receiver.to("/python?token=abc")
    sent = assert_signed_record(call, job_id, shim)
    assert sent["status"] == "SUCCESS" and sent["result"] == 5
    assert done["attempts"] == {"N": "1"} and done["last_status"] == {"N": "200"}
    assert "delivered_at" in done and "token" not in json.dumps(stack.item(job_id))
    assert stack.status(job_id) == "SUCCESS"


def test_http_submission_with_x_callback_url(stack, callback_worker, receiver, shim):
    answer = http(
        "POST",
        f"{shim.url}/tasks/tasks.debug.fail",
        {"message": "on purpose"},
        headers={"X-Callback-Url": f"{receiver.url}/http"},
    )
    assert answer.status == 202, answer.body
    job_id = answer.body["job_id"]
    wait_until(lambda: receiver.to("/http"), 30, message="the callback")
    wait_until(lambda: callback_of(stack, job_id, "delivered"), 15, message="delivered")
    [call] = receiver.to("/http")
    sent = assert_signed_record(call, job_id, shim)
    # The job's own message may quote its arguments: the callback, like GET, has its type.
    assert sent["status"] == "FAILURE" and sent["error"]["type"] == "RuntimeError"
    assert "message" not in sent["error"] and b"on purpose" not in call["body"]


def test_failing_receiver_is_retried_then_given_up(stack, callback_worker, receiver, shim):
    from tasks.debug import add

    receiver.status["/down"] = 500
    job_id = add.apply_async(kwargs={"x": 1, "y": 1}, headers=callback(f"{receiver.url}/down")).id
    failed = wait_until(
        lambda: callback_of(stack, job_id, "failed"), 45, message="callback given up"
    )
    calls = receiver.to("/down")
    assert len(calls) == 3  # JOBS_CALLBACK_MAX_ATTEMPTS
    assert all(verify(SECRET, c["body"], c["headers"]["X-Signature"]) for c in calls)
    assert len({c["body"] for c in calls}) == 1  # the same bytes every time
    assert failed["attempts"] == {"N": "3"} and failed["last_status"] == {"N": "500"}
    assert failed["last_error"]["S"].startswith("gave up after 3 attempts")
    assert "given_up_at" in failed
    shown = shim.job(job_id)["callback"]
    assert shown["state"] == "failed" and shown["attempts"] == 3
    assert stack.status(job_id) == "SUCCESS"  # the job's own outcome is untouched


@pytest.mark.browser
def test_the_page_asks_for_a_callback_and_shows_its_state(
    stack,
    callback_worker,
    receiver,
    shim,
    page,  # noqa: F811
):
    page.goto(f"{shim.url}/#tasks.debug.add")
    page.wait_for_function("document.querySelectorAll('#task-select option').length >= 2")
    page.fill("input[name=x]", "20")
    page.fill("input[name=y]", "22")
    page.fill("#callback-url", f"{receiver.url}/page")
    page.click("#submit-button")
    page.wait_for_selector("#job-status.SUCCESS", timeout=30_000)
    page.wait_for_function(
        "document.querySelector('#job-callback').textContent.startsWith('Callback delivered')",
        timeout=30_000,
    )
    text = page.text_content("#job-callback")
    assert "to 127.0.0.1:" in text and "1 attempt(s)" in text and "/page" not in text
    [call] = receiver.to("/page")
    assert json.loads(call["body"])["result"] == 42
    assert call["headers"]["X-Job-Id"] == page.text_content("#job-id")


def test_a_job_revoked_with_terminate_reports_back(stack, callback_worker, receiver, shim):
    from tasks.debug import sleep

    job = sleep.apply_async(
        kwargs={"seconds": 60, "steps": 1}, headers=callback(f"{receiver.url}/terminated")
    )
    wait_until(lambda: stack.status(job.id) == "STARTED", 30, message="the job started")
    job.revoke(terminate=True)
    wait_until(lambda: receiver.to("/terminated"), 30, message="the callback")
    [call] = receiver.to("/terminated")
    sent = json.loads(call["body"])
    assert sent["status"] == "REVOKED" and verify(
        SECRET, call["body"], call["headers"]["X-Signature"]
    )
    wait_until(lambda: callback_of(stack, job.id, "delivered"), 15, message="delivered")


def test_a_delivery_sent_by_hand_is_dropped(stack, callback_worker, receiver):
    """Whoever may send to the queue cannot have a record sent, signed, to their URL."""
    from tasks.client import app
    from tasks.debug import add

    job_id = add.delay(x=1, y=2).id
    wait_until(lambda: stack.status(job_id) == "SUCCESS", 30, message="the job")
    app.send_task(
        "tasks.callbacks.deliver",
        kwargs={"job_id": job_id, "url": f"{receiver.url}/forged", "seal": "0" * 64},
    )
    wait_until(
        lambda: f"a delivery for job {job_id} was not sealed" in callback_worker.log(),
        30,
        message="the forged delivery dropped",
    )
    assert receiver.to("/forged") == [] and "callback" not in (stack.item(job_id) or {})


def test_a_metadata_address_over_http_is_refused_and_recorded(stack, callback_worker, shim):
    answer = http(
        "POST",
        f"{shim.url}/tasks/tasks.debug.add",
        {"x": 1, "y": 1},
        headers={"X-Callback-Url": "https://169.254.169.254/latest/meta-data/"},
    )
    assert answer.status == 202, answer.body
    job_id = answer.body["job_id"]
    refused = wait_until(
        lambda: callback_of(stack, job_id, "refused"), 30, message="the callback refused"
    )
    assert "169.254.169.254 is link-local" in refused["last_error"]["S"]
    assert refused["attempts"] == {"N": "0"}
    shown = shim.job(job_id)
    assert shown["status"] == "SUCCESS" and shown["callback"]["state"] == "refused"
