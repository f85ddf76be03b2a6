"""The local API: Flask playing API Gateway with the very same definition and templates.

gunicorn 'api_shim.app:create_app()' -b 127.0.0.1:8000

Routes: POST /tasks/<name>, GET /jobs/<job_id>, GET /tasks (the catalog), GET /openapi.json,
GET /healthz, and the page at /. CORS is open (`*`): the API is keyed by header, not cookies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import HTTPException

from api_shim.gateway import GATEWAY_MAX_BYTES, Gateway, Incoming, Reply, error
from api_shim.openapi import CORS_ALLOW_HEADERS
from tasks.ops.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger(__name__)


def _incoming() -> Incoming:
    return Incoming(method=request.method, path=request.path, body=request.get_data(),
                    headers=dict(request.headers), query=request.args.to_dict(),
                    source_ip=request.remote_addr or "127.0.0.1")


def _respond(reply: Reply) -> Response:
    response = Response(reply.text(), status=reply.status, mimetype="application/json")
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


def create_app(settings: Settings | None = None) -> Flask:
    import tasks  # noqa: F401  (registers the jobs the API exposes)

    settings = settings or Settings.from_env()
    gateway = Gateway(settings)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = GATEWAY_MAX_BYTES
    app.extensions["gateway"] = gateway

    @app.after_request
    def cors(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response.headers["Access-Control-Allow-Methods"] = "GET,POST,OPTIONS"
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        message = {413: "Request Too Long", 404: "Not Found"}.get(exc.code or 500, exc.name)
        return _respond(error(exc.code or 500, message))

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        log.exception("internal error")
        return _respond(error(500, "Internal server error"))

    @app.get("/")
    def page() -> Response:
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC_DIR, name)

    @app.get("/healthz")
    def healthz() -> Response:
        return _respond(Reply(200, {"status": "ok", "tasks": len(gateway.jobs)}))

    @app.get("/openapi.json")
    def openapi() -> Response:
        return _respond(Reply(200, gateway.document))

    @app.get("/tasks")
    def list_tasks() -> Response:
        return _respond(gateway.list_tasks(_incoming()))

    @app.post("/tasks/<path:name>")
    def submit(name: str) -> Response:
        return _respond(gateway.submit(_incoming(), name))

    @app.get("/jobs/<path:job_id>")
    def get_job(job_id: str) -> Response:
        return _respond(gateway.get_job(_incoming(), job_id))

    return app
