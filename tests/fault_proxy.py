"""A fault-injecting HTTP proxy on 127.0.0.1, between workers and the AWS emulator.

Modes, switchable while it runs:
* "pass": forward every request.
* "flaky": fail every `every`-th request per service, alternating between a
  throttling error (HTTP 400 with the service's throttling code) and a 503,
  which botocore's standard retry mode must absorb.
* "down": accept the connection and close it without an answer, as an
  endpoint that is unreachable does; botocore retries connection errors too.
* "hang": accept the request and never answer while the mode lasts (a hung
  connection: the client waits until its own timeout), then close it.
Counts what it did per (service, outcome), so a test can prove faults landed.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

THROTTLING = {"sqs": "ThrottlingException", "dynamodb": "ProvisionedThroughputExceededException"}


def service_of(headers) -> str:
    target = headers.get("X-Amz-Target", "")
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs"
    return "other"


class FaultProxy:
    def __init__(self, upstream: str, every: int = 3) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.mode = "pass"
        self.every = every
        self.counts: Counter = Counter()
        self.closing = threading.Event()
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def decide(self, service: str) -> str:
        with self._lock:
            if self.mode == "down":
                outcome = "dropped"
            elif self.mode == "hang":
                outcome = "hung"
            elif self.mode == "flaky" and service != "other":
                self._seen[service] += 1
                n = self._seen[service]
                if n % self.every:
                    outcome = "forwarded"
                else:
                    outcome = "throttled" if (n // self.every) % 2 else "503"
            else:
                outcome = "forwarded"
            self.counts[(service, outcome)] += 1
            return outcome

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service = service_of(self.headers)
                outcome = proxy.decide(service)
                if outcome == "hung":
                    while proxy.mode == "hang" and not proxy.closing.wait(0.2):
                        pass
                    outcome = "dropped"
                if outcome == "dropped":
                    self.close_connection = True
                    self.connection.close()
                    return
                if outcome in ("throttled", "503"):
                    status = 400 if outcome == "throttled" else 503
                    code = THROTTLING[service] if outcome == "throttled" else "ServiceUnavailable"
                    self._answer(
                        status,
                        json.dumps(
                            {"__type": code, "message": "injected by the fault proxy"}
                        ).encode(),
                        {
                            "Content-Type": "application/x-amz-json-1.0",
                            "x-amzn-query-error": f"{code};Sender",
                        },
                    )
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=60
                )
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("connection", "keep-alive")
                    }
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    passed = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower()
                        not in ("connection", "transfer-encoding", "content-length", "keep-alive")
                    }
                    self._answer(response.status, data, passed)
                finally:
                    upstream.close()

            def _answer(self, status: int, data: bytes, headers: dict) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        return Handler
