"""The bundled tracker's Flask application factory."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from . import altercpa, api, network, report
from .store import TrackerStore

DEFAULT_DB = "bangi-tracker.sqlite3"
EXPOSED_WARNING = (
    "Warning: the bundled tracker is for testing and demos. It has no authentication:"
    " do not expose it; serve it on loopback (127.0.0.1) only."
)
MAX_BODY = 64 * 1024
_API_MESSAGES = {
    404: "no such endpoint: see /api/v2/track/click, /api/v2/track/lead, /api/v2/track/postback",
    413: f"request body is larger than {MAX_BODY // 1024} KiB",
}
_PRO_MESSAGES = {**_API_MESSAGES, 404: altercpa.NO_SUCH_ENDPOINT}


def create_app(
    db_path: str | os.PathLike[str] = DEFAULT_DB,
    *,
    altercpa_tokens: Iterable[str] | None = None,
    network_postback_url: str | None = None,
) -> Flask:
    """A tracker storing its events in the SQLite file ``db_path``.

    It is for tests and demos: it has no authentication, so serve it on
    loopback only, never where others can reach it.

    :param altercpa_tokens: the site tokens the fake AlterCPA Pro accepts
        (altercpa.py); when not given, those in ``$BANGI_TRACKER_ALTERCPA_TOKENS``
        (comma-separated).
    :param network_postback_url: where the fake CPA network's buttons send
        postbacks (network.py): a URL template with ``{sub1}``, ``{status}``,
        ``{payout}`` and ``{offer_id}``, e.g. ``network.tracker_postback_url(url)``
        for this tracker's own API once its URL is known. Without it the
        buttons send nothing.

    The store is at ``app.extensions["bangi_tracker"]``; close it when done
    with the app (the CLI does).
    """
    tokens = altercpa.site_tokens(altercpa_tokens)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config[altercpa.CONFIG_KEY] = tokens
    app.config[network.POSTBACK_URL] = network_postback_url
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep params in the order sent
    app.extensions["bangi_tracker"] = TrackerStore(db_path)
    app.register_blueprint(api.bp)
    app.register_blueprint(altercpa.bp)
    app.register_blueprint(report.bp)
    app.register_blueprint(network.bp)
    app.register_error_handler(HTTPException, _http_error)
    app.before_request(_refuse_oversized_chunked_body)
    app.before_request(_refuse_undecodable_query)
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name to listen on) reaches this machine alone."""
    if host.casefold() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_undecodable_query() -> None:
    """A query string that is not UTF-8 is the client's error, not a 500 from ``request.args``.

    Werkzeug's dev server re-encodes such bytes; gunicorn and wsgiref pass them through.
    """
    if request.path.startswith("/api/v2/"):
        try:
            request.args  # noqa: B018 (parsing is the check)
        except UnicodeDecodeError:
            message = "the query string must be UTF-8 (percent-encode other bytes)"
            raise api.ApiError(400, message) from None
    # The fake Pro's endpoints record such a call before refusing it (altercpa.py).


def _refuse_oversized_chunked_body() -> None:
    """Refuse a body of unknown length that reaches the limit.

    Werkzeug stops reading such a body at ``MAX_CONTENT_LENGTH`` without
    checking for more, so the view would see it silently truncated.
    """
    if request.content_length is None and len(request.get_data(cache=True)) >= MAX_BODY:
        raise RequestEntityTooLarge()


def _http_error(error: HTTPException) -> HTTPException | Response:
    """API clients get JSON errors (with the original headers, e.g. ``Allow``); pages get HTML.

    Under /api/site/ the fake AlterCPA Pro answers, in Pro's shape, and records the call.
    """
    if not request.path.startswith("/api/"):
        return error
    pro = request.path.startswith(altercpa.PREFIX + "/")
    message = error.description
    if not isinstance(error, api.ApiError):
        message = (_PRO_MESSAGES if pro else _API_MESSAGES).get(error.code or 500, message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        message = f"{request.method} is not allowed here: use {', '.join(error.valid_methods)}"
    response = altercpa.refused(str(message)) if pro else jsonify(error=message)
    response.status_code = error.code or 500
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
