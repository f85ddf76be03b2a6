"""gunicorn settings for the shim (`gunicorn -c python:api_shim.gunicorn_conf ...`)."""

from tasks.ops.settings import Settings

_settings = Settings.from_env()
# Loopback only: the shim is a local stand-in for API Gateway, not a public server.
bind = _settings.shim_bind
workers = _settings.shim_workers
accesslog = "-"
# API Gateway takes URLs up to 8 KB; gunicorn's 4 KB default would answer HTML, not JSON.
limit_request_line = 8190
# gunicorn 27's control socket lives at one shared path: parallel shims would collide.
control_socket_disable = True
