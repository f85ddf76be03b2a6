"""Hostile and broken requests at the HTTP edge: a clear 4xx each, nothing enqueued.

Sent over raw sockets to gunicorn serving the shim, so that what a client can put on
the wire (bad bytes, CR/LF, odd paths) reaches the server as it is. A request without
Content-Type is not among them: API Gateway treats it as application/json, as the shim does.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import wait_until
from tests.http_shim import Shim, http, running_shim

pytestmark = [pytest.mark.integration, pytest.mark.fault]

ADD = "/tasks/tasks.debug.add"
JSON = "application/json"


def deep(levels: int) -> bytes:
    return b'{"x": ' + b"[" * levels + b"]" * levels + b', "y": 1}'


# (label, method, path, content type or None, body, expected status or statuses)
CASES: list[tuple[str, str, str, str | None, bytes, int | tuple[int, ...]]] = [
    ("invalid JSON", "POST", ADD, JSON, b'{"x": 1,', 400),
    ("empty body", "POST", ADD, JSON, b"", 400),
    ("JSON array", "POST", ADD, JSON, b"[1, 2]", 400),
    ("JSON string", "POST", ADD, JSON, b'"x"', 400),
    ("JSON number", "POST", ADD, JSON, b"3", 400),
    ("JSON null", "POST", ADD, JSON, b"null", 400),
    ("missing field", "POST", ADD, JSON, b'{"x": 1}', 400),
    ("extra field", "POST", ADD, JSON, b'{"x": 1, "y": 2, "z": 3}', 400),
    ("wrong type", "POST", ADD, JSON, b'{"x": "1", "y": 2}', 400),
    ("boolean for a number", "POST", ADD, JSON, b'{"x": true, "y": 2}', 400),
    ("NaN", "POST", ADD, JSON, b'{"x": NaN, "y": 2}', 400),
    ("Infinity", "POST", ADD, JSON, b'{"x": Infinity, "y": 2}', 400),
    ("huge number overflowing a double", "POST", ADD, JSON, b'{"x": 1e400, "y": 2}', 400),
    ("deeply nested JSON", "POST", ADD, JSON, deep(100_000), 400),
    ("invalid UTF-8", "POST", ADD, JSON, b'{"x": 1, "y": 2, "\xff\xfe": 1}', 400),
    ("UTF-16 body", "POST", ADD, JSON, '{"x": 1, "y": 2}'.encode("utf-16"), 400),
    ("duplicate keys with a bad last value", "POST", ADD, JSON, b'{"x": 1, "y": 2, "y": "a"}', 400),
    (
        "valid body too large for one queue message",
        "POST",
        "/tasks/tasks.text.analyze",
        JSON,
        json.dumps({"text": "é" * 450_000}, ensure_ascii=False).encode(),
        413,
    ),
    # API Gateway validates before the integration: the schema's 400 comes before SQS's 413.
    (
        "oversized body that also breaks the schema",
        "POST",
        "/tasks/tasks.text.analyze",
        JSON,
        json.dumps({"text": "a" * 2_000_000}).encode(),
        400,
    ),
    (
        "body over API Gateway's 10 MB",
        "POST",
        "/tasks/tasks.text.analyze",
        JSON,
        b'{"text": "' + b"a" * (10 * 1024 * 1024) + b'"}',
        413,
    ),
    (
        "string longer than the schema allows",
        "POST",
        "/tasks/tasks.text.analyze",
        JSON,
        json.dumps({"text": "a" * 500_001}).encode(),
        400,
    ),
    ("text/plain", "POST", ADD, "text/plain", b'{"x": 1, "y": 2}', 415),
    ("form encoded", "POST", ADD, "application/x-www-form-urlencoded", b"x=1&y=2", 415),
    ("unknown task", "POST", "/tasks/tasks.nope", JSON, b"{}", 404),
    ("private task", "POST", "/tasks/tests.jobs.crash", JSON, b"{}", 404),
    ("celery built-in task", "POST", "/tasks/celery.chord_unlock", JSON, b"{}", 404),
    ("path traversal in task name", "POST", "/tasks/..%2f..%2fetc%2fpasswd", JSON, b"{}", 404),
    (
        "task name with a NUL byte",
        "POST",
        "/tasks/tasks.debug.add%00",
        JSON,
        b'{"x": 1, "y": 2}',
        404,
    ),
    ("job id with path traversal", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", None, b"", 400),
    (
        "job id with CR LF header injection",
        "GET",
        "/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6%0d%0aSet-Cookie:%20x=1",
        None,
        b"",
        (400, 404),
    ),
    ("job id that is not a UUID", "GET", "/jobs/not-a-job", None, b"", 400),
    (
        "job id of a group item",
        "GET",
        "/jobs/group:3fa85f64-5717-4562-b3fc-2c963f66afa6",
        None,
        b"",
        400,
    ),
    ("job id of 5,000 characters", "GET", "/jobs/" + "a" * 5000, None, b"", 400),
    (
        "job id with a quote (template injection)",
        "GET",
        "/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6%22%7D",
        None,
        b"",
        400,
    ),
    ("unknown route", "GET", "/admin", None, b"", 404),
]


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "edge") as server:
        yield server


def raw_request(
    shim: Shim,
    method: str,
    path: str,
    content_type: str | None,
    body: bytes,
    extra_headers: bytes = b"",
) -> tuple[int, bytes, bytes]:
    host, port = shim.url.removeprefix("http://").split(":")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    data = head.encode() + extra_headers + b"\r\n" + body
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        # The server may answer early (413 on Content-Length) and close: read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            if not chunks:
                raise
    response = b"".join(chunks)
    headers, _, payload = response.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    return status, headers, payload


def queue_is_empty(stack) -> bool:
    return stack.queue_counts() == (0, 0)


@pytest.mark.parametrize(
    ("label", "method", "path", "content_type", "body", "expected"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_bad_request_gets_a_clear_json_error_and_enqueues_nothing(
    stack, shim, label, method, path, content_type, body, expected
):
    assert queue_is_empty(stack)
    status, headers, payload = raw_request(shim, method, path, content_type, body)
    assert status in (expected if isinstance(expected, tuple) else (expected,)), (
        label,
        payload[:300],
    )
    answer = json.loads(payload)
    assert isinstance(answer["message"], str) and answer["message"], label
    assert b"set-cookie" not in headers.lower(), label
    assert queue_is_empty(stack), f"{label}: something was enqueued"


def test_header_injection_in_the_api_key_is_refused(stack, shim):
    status, headers, _ = raw_request(
        shim,
        "POST",
        ADD,
        JSON,
        b'{"x": 1, "y": 2}',
        extra_headers=b"x-api-key: a\rSet-Cookie: y=1\r\n",
    )
    assert 400 <= status < 500
    assert b"set-cookie: y" not in headers.lower()
    assert queue_is_empty(stack)


def test_the_shim_is_healthy_and_serves_after_the_abuse(stack, shim, start_worker):
    assert http("GET", f"{shim.url}/healthz").status == 200
    start_worker(concurrency=1)
    job_id = shim.submit("tasks.debug.add", {"x": 40, "y": 2})
    assert shim.wait(job_id)["result"] == 42
    wait_until(lambda: queue_is_empty(stack), 30, message="queue drained")
