"""gunicorn settings for the shim (`gunicorn -c python:api_shim.gunicorn_conf ...`)."""

import os

# Loopback only: the shim is a local stand-in for API Gateway, not a public server.
bind = os.environ.get("SHIM_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SHIM_WORKERS", "2"))
accesslog = "-"
# API Gateway takes URLs up to 8 KB; gunicorn's 4 KB default would answer HTML, not JSON.
limit_request_line = 8190
# gunicorn 27's control socket lives at one shared path: parallel shims would collide.
control_socket_disable = True
