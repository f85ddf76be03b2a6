"""The local API: Flask playing API Gateway with the very same definition and templates.

gunicorn 'api_shim.app:create_app()' -b 127.0.0.1:8000

Every request goes to `Gateway.handle`, which routes and answers from the OpenAPI document as
API Gateway does (POST /tasks/<name>, GET /jobs/<job_id>, GET /tasks, the OPTIONS preflights,
and API Gateway's own errors, CORS included). Only GET /, /static/*, /healthz,
/openapi.json and the operator's console under /console/ (console.web) are the shim's own
(they are not deployed). CORS is open (`*`): the API is keyed
by header, not cookies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from api_shim.gateway import GATEWAY_MAX_BYTES, Gateway, Incoming, Reply
from console.sources import local_source
from console.web import console_blueprint
from tasks.ops.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
log = logging.getLogger(__name__)


def _incoming() -> Incoming:
    environ = request.environ
    return Incoming(
        method=request.method,
        path=request.path,
        body=request.get_data(),
        headers=dict(request.headers),
        query=request.args.to_dict(),
        source_ip=request.remote_addr or "127.0.0.1",
        raw_path=environ.get("RAW_URI") or environ.get("REQUEST_URI"),
    )


def _respond(reply: Reply) -> Response:
    response = Response(reply.text(), status=reply.status, mimetype="application/json")
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


def create_app(settings: Settings | None = None) -> Flask:
    """The shim for `settings` (the environment's, read once here, by default): it serves
    the public jobs of the modules they name (JOBS_MODULES, JOBS_EXTRA_MODULES)."""
    from tasks.app_factory import register_jobs

    settings = settings or Settings.from_env()
    register_jobs(settings)
    gateway = Gateway(settings)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = GATEWAY_MAX_BYTES
    app.extensions["gateway"] = gateway

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        return _respond(gateway.gateway_response("REQUEST_TOO_LARGE"))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code in (404, 405):
            # Flask's routes did not match (a segment with a newline escapes its <path>, a
            # method outside METHODS): the gateway routes it as API Gateway does.
            return _respond(gateway.handle(_incoming()))
        return _respond(
            gateway.gateway_response("DEFAULT_4XX", status=exc.code or 400, message=exc.name)
        )

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        log.exception("internal error")
        return _respond(gateway.gateway_response("API_CONFIGURATION_ERROR"))

    # The shim's own pages (GET only; not part of the deployed API).
    @app.get("/", provide_automatic_options=False)
    def page() -> Response:
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/static/<path:name>", provide_automatic_options=False)
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC_DIR, name)

    # The operator's console over the emulator's queue and table (docs/console.md).
    app.register_blueprint(console_blueprint(local_source(settings)), url_prefix="/console")

    @app.get("/healthz", provide_automatic_options=False)
    def healthz() -> Response:
        return _respond(Reply(200, {"status": "ok", "tasks": len(gateway.jobs)}))

    @app.get("/openapi.json", provide_automatic_options=False)
    def openapi() -> Response:
        return _respond(Reply(200, gateway.document))

    # Everything else is the API, answered from the document.
    @app.route("/<path:path>", methods=METHODS, provide_automatic_options=False)
    def api(path: str) -> Response:
        return _respond(gateway.handle(_incoming()))

    app.add_url_rule(
        "/",
        "api_root",
        lambda: _respond(gateway.handle(_incoming())),
        methods=[m for m in METHODS if m not in ("GET", "HEAD")],
        provide_automatic_options=False,
    )
    return app
