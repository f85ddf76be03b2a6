"""One POST to a vetted callback address (tasks.callbacks.target.Target).

The connection goes to the vetted IP itself, never to the name again (no second DNS
lookup: rebinding cannot move it), while TLS sends the URL's host as SNI and checks the
certificate against it (ssl's default context: CA chain and hostname). Short timeouts,
no redirect followed (the status is returned as it is), and the response body is not read.
"""

from __future__ import annotations

import http.client
import socket
import ssl

from tasks.callbacks.target import Target

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0


class PostFailed(Exception):
    """No HTTP status came back: connection, TLS or timeout."""


def post(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    *,
    context: ssl.SSLContext | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> int:
    """POST `body` and return the response's status code; raises PostFailed."""
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((target.address, target.port), timeout=connect_timeout)
        if target.scheme == "https":
            sock = (context or ssl.create_default_context()).wrap_socket(
                sock, server_hostname=target.host
            )
        sock.settimeout(read_timeout)
        connection = http.client.HTTPConnection(target.address, target.port, timeout=read_timeout)
        connection.sock = sock  # already connected: http.client will not connect again
        connection.request(
            "POST",
            target.request_target,
            body=body,
            headers={"Host": target.host_header, "Connection": "close", **headers},
        )
        response = connection.getresponse()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        raise PostFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
    finally:
        if sock is not None:
            sock.close()
