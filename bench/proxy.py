"""A counting reverse proxy on 127.0.0.1 in front of the SQS and DynamoDB emulators.

Workers are pointed at it (AWS_ENDPOINT_URL_SQS/_DYNAMODB and the queue URL), so every
request they make is counted by service and action without changing the worker:
JSON-protocol calls name the action in `X-Amz-Target` (`AmazonSQS.ReceiveMessage`,
`DynamoDB_20120810.UpdateItem`), query-protocol SQS calls in the `Action=` parameter.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "expect",
}


def classify(target: str | None, body: bytes, query: str) -> tuple[str, str]:
    """(service, action) of one AWS request."""
    if target:
        prefix, _, action = target.partition(".")
        service = "dynamodb" if prefix.startswith("DynamoDB") else "sqs"
        return service, action or prefix
    for source in (query, body.decode("latin-1") if body else ""):
        action = parse_qs(source).get("Action")
        if action:
            return "sqs", action[0]
    return "sqs", "unknown"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A stopped worker drops its long poll mid-request: expected, not worth a traceback.
        pass


class CountingProxy:
    def __init__(self, sqs_upstream: str, dynamodb_upstream: str) -> None:
        self.upstreams = {"sqs": urlsplit(sqs_upstream), "dynamodb": urlsplit(dynamodb_upstream)}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.inflight = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service, action = classify(
                    self.headers.get("X-Amz-Target"), body, urlsplit(self.path).query
                )
                with proxy.lock:
                    proxy.counts[(service, action)] += 1
                    proxy.inflight += 1
                try:
                    status, headers, payload = proxy.forward(
                        service, self.command, self.path, self.headers, body
                    )
                finally:
                    with proxy.lock:
                        proxy.inflight -= 1
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def forward(self, service: str, method: str, path: str, headers, body: bytes):
        # A fresh upstream connection per request: simple, and a stale keep-alive
        # connection can never hold a worker's request.
        target = self.upstreams[service]
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
            out["Host"] = target.netloc
            conn.request(method, path, body=body, headers=out)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no request is being relayed, e.g. a stopped worker's long poll,
        which would otherwise still take messages off the queue for nobody."""
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.05)

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter(self.counts)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
