"""The console's pages, its JSON endpoints and its confirmed actions: one Flask blueprint.

Mounted at /console by the shim (`make run`) and by `python -m ecs console` (console.app).
Pages are rendered on the server; console/static/console.js polls /api/now, /api/chart and
/api/metrics (?range=hour or day), and /api/redrive on the dead-letters page while SQS
moves messages, and says how long ago it last succeeded.

Actions (cancel a job, redrive the DLQ or one of its messages) are two steps: a GET shows
what will be done and a form; its POST does it. A POST must carry the form's token equal
to the console's cookie (double submit: SameSite=Strict, HttpOnly; another site can
neither read nor send it, and gunicorn's workers need no shared secret) and, when the
browser sends one, an Origin of this host: a cross-site form cannot act. Every action is
logged on `console.actions`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from flask import Blueprint, Response, jsonify, render_template, request, url_for
from werkzeug.exceptions import NotFound

from console.sources import FINISHED, Source
from console.timeline import timeline

actions_log = logging.getLogger("console.actions")
log = logging.getLogger(__name__)
PAGE_SIZE = 25
CSRF_COOKIE = "console_csrf"


def console_blueprint(source: Source, name: str = "console") -> Blueprint:
    """The console over `source`; register it with url_prefix="/console"."""
    bp = Blueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    def confirmation(template: str, **values: Any) -> Response:
        """A confirm page: its form's token, the same as the cookie's."""
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = _page(template, token=token, **values)
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path=bp_prefix(),
            httponly=True,
            samesite="Strict",
        )
        return response

    def bp_prefix() -> str:
        return url_for(f"{bp.name}.now").rstrip("/") or "/"

    def refused() -> Response | None:
        """A POST without the cookie's token or from another origin: 403."""
        sent = request.form.get("token", "")
        token = request.cookies.get(CSRF_COOKIE, "")
        origin = request.headers.get("Origin")
        if origin:  # "null" too: a sandboxed or privacy-redirected form is not ours
            here = urlsplit(request.host_url)
            there = urlsplit(origin)
            if (there.scheme, there.netloc) != (here.scheme, here.netloc):
                return _page("refused.html", 403, reason="the request came from another site")
        if not token or not hmac.compare_digest(sent.encode(), token.encode()):
            return _page("refused.html", 403, reason="the form's token is missing or stale")
        return None

    def _page(template: str, code: int = 200, **values: Any) -> Response:
        html = render_template(f"console/{template}", kind=source.kind, **values)
        response = Response(html, status=code, mimetype="text/html")
        # The console is a tool, not a page to embed or cache.
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
        )
        return response

    @bp.get("/")
    def now() -> Response:
        return _page("now.html", view=source.now(), finished=FINISHED)

    @bp.get("/api/now")
    def api_now() -> Response:
        return jsonify(source.now())

    @bp.get("/api/chart")
    def api_chart() -> Response:
        try:
            return jsonify(source.chart(span=request.args.get("range", "hour")))
        except ValueError as exc:
            return _json_error(str(exc))

    @bp.get("/api/metrics")
    def api_metrics() -> Response:
        try:
            return jsonify(source.metrics(span=request.args.get("range", "hour")))
        except ValueError as exc:
            return _json_error(str(exc))

    @bp.get("/api/redrive")
    def api_redrive() -> Response:
        return jsonify({"progress": source.redrive_progress()})

    @bp.get("/jobs")
    def jobs() -> Response:
        status = request.args.get("status") or "FAILURE"
        cursor = request.args.get("cursor") or None
        task = request.args.get("task") or None
        since = request.args.get("since") or None
        try:
            page = source.jobs(status, cursor, PAGE_SIZE, task=task, since=since)
        except ValueError as exc:
            return _page("refused.html", 400, reason=str(exc))
        return _page(
            "jobs.html",
            status=status,
            statuses=source.statuses(),
            page=page,
            cursor=cursor,
            filters={k: v for k, v in (("task", task), ("since", since)) if v},
        )

    @bp.get("/jobs/<job_id>")
    def job(job_id: str) -> Response:
        try:
            record = source.job(job_id)
        except ValueError as exc:
            return _page("refused.html", 400, reason=str(exc))
        # No record: queued and not started, or unknown (or expired). A 404 that still
        # offers the cancel, which a queued job can take (it never runs).
        return _page(
            "job.html",
            200 if record.get("created_at") else 404,
            job=record,
            events=timeline(record),
            finished=record.get("status") in FINISHED,
        )

    @bp.route("/jobs/<job_id>/cancel", methods=["GET", "POST"])
    def cancel(job_id: str) -> Response:
        terminate = request.values.get("terminate") == "1"
        if request.method == "GET":
            try:
                record = source.job(job_id)
            except ValueError as exc:
                return _page("refused.html", 400, reason=str(exc))
            return confirmation("confirm_cancel.html", job=record, terminate=terminate)
        if (answer := refused()) is not None:
            return answer
        try:
            outcome = source.cancel(job_id, terminate=terminate)
        except ValueError as exc:
            return _page("refused.html", 400, reason=str(exc))
        said = str(outcome)
        actions_log.warning(
            "console action cancel job=%s terminate=%s from %s: %s",
            job_id,
            terminate,
            request.remote_addr,
            said,
        )
        return _page(
            "done.html",
            said=said,
            ok=outcome.revocation.revoked,
            back=url_for(f"{bp.name}.job", job_id=job_id),
        )

    @bp.get("/dlq")
    def dead_letters() -> Response:
        return _page("dlq.html", letters=source.dead_letters(), progress=source.redrive_progress())

    @bp.get("/dlq/<message_id>")
    def dead_letter(message_id: str) -> Response:
        letter = source.dead_letter(message_id)
        if letter is None:
            return _page("refused.html", 404, reason=f"message {message_id} is not in the DLQ")
        return _page("letter.html", letter=letter)

    @bp.route("/dlq/<message_id>/redrive", methods=["GET", "POST"])
    def redrive_one(message_id: str) -> Response:
        if request.method == "GET":
            letter = source.dead_letter(message_id)
            if letter is None:
                return _page("refused.html", 404, reason=f"message {message_id} is not in the DLQ")
            return confirmation("confirm_redrive.html", letter=letter)
        if (answer := refused()) is not None:
            return answer
        said = source.redrive_one(message_id)
        actions_log.warning(
            "console action redrive message=%s from %s: %s",
            message_id,
            request.remote_addr,
            said,
        )
        return _page(
            "done.html",
            said=said,
            ok=said.startswith("moved"),
            back=url_for(f"{bp.name}.dead_letters"),
        )

    @bp.route("/dlq/redrive", methods=["GET", "POST"])
    def redrive() -> Response:
        if request.method == "GET":
            return confirmation("confirm_redrive.html", depth=source.now()["dlq"], letter=None)
        if (answer := refused()) is not None:
            return answer
        try:
            said = source.redrive()
        except ValueError as exc:
            actions_log.warning("console action redrive from %s: %s", request.remote_addr, exc)
            return _page("refused.html", 409, reason=str(exc))
        actions_log.warning("console action redrive from %s: %s", request.remote_addr, said)
        return _page("done.html", said=said, ok=True, back=url_for(f"{bp.name}.dead_letters"))

    def _json_error(reason: str) -> Response:
        response = jsonify({"error": reason})
        response.status_code = 400
        return response

    @bp.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        return _page("refused.html", 404, reason="no such page")

    @bp.errorhandler(BotoCoreError)
    @bp.errorhandler(ClientError)
    def aws_error(exc: Exception) -> Response:
        """What the emulator or AWS answered, said plainly, not a 500: a 503 when it did not
        answer (try again), a 502 when it refused the call."""
        reason = unavailable(exc, source.kind)
        code = 502 if isinstance(exc, ClientError) else 503
        log.warning("console %s %s: %s", request.method, request.path, reason)
        if request.path.startswith(url_for(f"{bp.name}.now") + "api/"):
            response = jsonify({"error": reason})
            response.status_code = code
            return response
        return _page("refused.html", code, reason=reason)

    return bp


def unavailable(exc: Exception, kind: str) -> str:
    """A botocore error as a sentence an operator can act on."""
    if isinstance(exc, EndpointConnectionError):
        if kind == "local":
            return (
                f"the emulator is not answering ({exc}): is it running? "
                "`make run` starts it with the shim and a worker"
            )
        return f"AWS is not answering ({exc}): check the network and the region"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        said = f"{exc.operation_name} refused: {code} {message}".rstrip()
        if "AccessDenied" in code or "UnrecognizedClient" in code or "Expired" in code:
            said += " (the rights the console needs: python -m ecs console --print-policy)"
        return said
    return f"{type(exc).__name__}: {exc}"
