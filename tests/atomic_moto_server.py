"""moto's server with DynamoDB's atomicity: `python -m tests.atomic_moto_server -p PORT`.

DynamoDB applies each conditional write atomically: two concurrent UpdateItems whose
conditions both hold before either runs cannot both succeed. moto's threaded server checks
a condition and applies the update as separate steps, so under concurrent requests (20
workers' STARTED writes at once) both may pass (seen: two runs of one job id in
tests/test_idempotency.py under load). One lock around DynamoDB's requests restores what
AWS documents; SQS and S3 stay concurrent, so long polls never wait on it.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class DynamoDBSerialised:
    """WSGI middleware: one DynamoDB request at a time (X-Amz-Target: DynamoDB_*)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            # Read the whole answer inside the lock: the write is done by then.
            return list(self.app(environ, start_response))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        DynamoDBSerialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
