"""The console alone, as a Flask app: `python -m ecs console` serves it on 127.0.0.1."""

from __future__ import annotations

from flask import Flask, redirect
from werkzeug.wrappers import Response

from console.sources import Source
from console.web import console_blueprint

PREFIX = "/console"


def create_app(source: Source) -> Flask:
    """The console over `source` at /console (and / sends there)."""
    app = Flask(__name__, static_folder=None)
    app.register_blueprint(console_blueprint(source), url_prefix=PREFIX)

    @app.get("/")
    def home() -> Response:
        return redirect(PREFIX + "/")

    return app
