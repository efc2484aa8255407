"""The bundled tracker's Flask application factory."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from . import api, network, report
from .store import TrackerStore

DEFAULT_DB = "bangi-tracker.sqlite3"
MAX_BODY = 64 * 1024
_API_MESSAGES = {
    404: "no such endpoint: see /api/v2/track/click, /api/v2/track/lead, /api/v2/track/postback",
    413: f"request body is larger than {MAX_BODY // 1024} KiB",
}


def create_app(db_path: str | os.PathLike[str] = DEFAULT_DB) -> Flask:
    """A tracker storing its events in the SQLite file ``db_path``.

    The store is at ``app.extensions["bangi_tracker"]``; close it when done
    with the app (the CLI does).
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep params in the order sent
    app.extensions["bangi_tracker"] = TrackerStore(db_path)
    app.register_blueprint(api.bp)
    app.register_blueprint(report.bp)
    app.register_blueprint(network.bp)
    app.register_error_handler(HTTPException, _http_error)
    app.before_request(_refuse_oversized_chunked_body)
    return app


def _refuse_oversized_chunked_body() -> None:
    """Refuse a body of unknown length that reaches the limit.

    Werkzeug stops reading such a body at ``MAX_CONTENT_LENGTH`` without
    checking for more, so the view would see it silently truncated.
    """
    if request.content_length is None and len(request.get_data(cache=True)) >= MAX_BODY:
        raise RequestEntityTooLarge()


def _http_error(error: HTTPException) -> HTTPException | Response:
    """API clients get JSON errors (with the original headers, e.g. ``Allow``); pages get HTML."""
    if not request.path.startswith("/api/"):
        return error
    message = error.description
    if not isinstance(error, api.ApiError):
        message = _API_MESSAGES.get(error.code or 500, message)
    response = jsonify(error=message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response = jsonify(
            error=f"{request.method} is not allowed here: use {', '.join(error.valid_methods)}"
        )
    response.status_code = error.code or 500
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
