"""A fake AlterCPA Pro: the two External sites endpoints, so the whole chain can be watched.

AlterCPA Pro takes a landing's leads through an external site (seed 000): a
site token and two GET endpoints,

- ``/api/site/click.json?token=&click=&exto=`` registers a lead (status ``wait``);
- ``/api/site/status.json?token=&click=&status=&auto=1&exto=`` moves it to
  ``hold``, ``approve``, ``cancel`` or ``trash``, creating it first when
  ``auto=1`` and there is none yet.

``click`` is Pro's click id from the deep link and ``exto`` the landing's own
lead id (bangi-landing sends its clickId); Pro keeps one lead per (click, exto).
Pro answers JSON with a ``status`` field: ``{"status": "ok", "id": <lead id>}``
or ``{"status": "error", "error": "..."}``, "Forbidden" for a wrong token.

This blueprint plays Pro on the bundled tracker so that the demo and the tests
see the landing's calls arrive: the leads live in the store's ``pro_leads``
table, and every call to the two endpoints, accepted or not, is recorded as an
``altercpa`` event (``/api/v2/events?type=altercpa``, the report), under the
``exto``'s journey when it is a clickId.

What it deliberately does differently from Pro:

- Pro may refuse a call with HTTP 200 and ``{"status": "error"}``; the fake
  answers 403 for a wrong token and 400, 404 or 405 for the rest, so that every
  invalid request to the bundled tracker is a 4xx with a JSON body. The landing
  side treats both alike: only ``{"status": "ok"}`` is success.
- It is strict where Pro may guess: a repeated parameter, a missing ``click``
  or ``exto`` or one over 200 characters, a ``status`` outside the four and an
  ``auto`` other than 0 or 1 are refused with a message naming the parameter,
  never echoing its value.
- It has no offers, flows or payouts: every configured site token is one site.
  With no token configured every call is Forbidden, so a tracker never takes
  Pro calls nobody set up.
- A wrong token's value is recorded as ``REDACTED`` (it may be someone's real
  token); the right one is kept, for tests comparing full query strings, and
  the report redacts every token it shows.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from ..core.journey import parse_click_id
from ..core.statuses import PRO_STATUSES
from .api import ApiError
from .store import NO_SUCH_PRO_LEAD, ProMove, TrackerStore

PREFIX: Final = "/api/site"
bp = Blueprint("altercpa", __name__, url_prefix=PREFIX)

TOKENS_ENV: Final = "BANGI_TRACKER_ALTERCPA_TOKENS"
CONFIG_KEY: Final = "BANGI_ALTERCPA_TOKENS"
REDACTED: Final = "REDACTED"
FORBIDDEN: Final = "Forbidden"
NO_SUCH_ENDPOINT: Final = "no such endpoint: see /api/site/click.json, /api/site/status.json"
MAX_ID_CHARS: Final = 200  # of click and exto: ids, which the lead is stored under

_MOVES: Final = tuple(PRO_STATUSES.values())  # status.json's; wait is click.json's alone
_PARAMETERS: Final = {
    "click.json": ("token", "click", "exto"),
    "status.json": ("token", "click", "exto", "status", "auto"),
}
_REQUIRED: Final = {
    "click": "click is required: Pro's click id from the deep link",
    "exto": "exto is required: the landing's lead id",
    "status": f"status is required: {', '.join(_MOVES)}",
}


def site_tokens(tokens: Iterable[str] | None) -> tuple[str, ...]:
    """The site tokens to accept: ``tokens``, or when None ``$BANGI_TRACKER_ALTERCPA_TOKENS``'s.

    Blank tokens are dropped: an empty one would match a call sending ``token=``.
    """
    if isinstance(tokens, str):
        # Iterating it would make each character a token.
        raise TypeError("altercpa_tokens takes an iterable of tokens, not one string")
    if tokens is None:
        tokens = os.environ.get(TOKENS_ENV, "").split(",")
    return tuple(token.strip() for token in tokens if token.strip())


def redact_token(query: str) -> str:
    """``query`` with the value of each ``token`` parameter replaced, the rest as is."""
    return "&".join(_redact_pair(pair) for pair in query.split("&"))


def _redact_pair(pair: str) -> str:
    name, _, value = pair.partition("=")
    # Matched as the query parser decodes names (tok%65n is token), and in any
    # case: a mistyped Token= is still someone's token.
    if value and unquote_plus(name, errors="replace").strip().casefold() == "token":
        return f"{name}={REDACTED}"
    return pair


def _store() -> TrackerStore:
    store: TrackerStore = current_app.extensions["bangi_tracker"]
    return store


@dataclass(frozen=True)
class _Call:
    """One request to an External sites endpoint, read leniently enough to record any of them."""

    endpoint: str
    query: str  # as received; bytes that are not UTF-8 as \xNN
    args: MultiDict[str, str]  # empty when the query is not UTF-8
    utf8: bool

    @classmethod
    def read(cls, endpoint: str) -> _Call:
        raw = request.query_string
        try:
            query = raw.decode()
        except UnicodeDecodeError:
            # request.args would raise (a 500): record what came, refuse it below.
            return cls(endpoint, raw.decode(errors="backslashreplace"), MultiDict(), utf8=False)
        return cls(endpoint, query, request.args, utf8=True)

    def once(self, name: str) -> str | None:
        """The parameter's value when it is given exactly once."""
        values = self.args.getlist(name)
        return values[0] if len(values) == 1 else None

    def authorised(self) -> bool:
        given = (self.once("token") or "").encode()
        # Each configured token is compared, so the time taken does not tell which one matched.
        matches = [
            hmac.compare_digest(given, token.encode())
            for token in current_app.config.get(CONFIG_KEY, ())
        ]
        return bool(given) and any(matches)

    @property
    def status(self) -> str | None:
        """The Pro status the call asks for, when it is one."""
        if self.endpoint == "click.json":
            return "wait"
        status = self.once("status")
        return status if status in _MOVES else None

    def record(self) -> dict[str, Any]:
        """The call as its ``altercpa`` event keeps it (the store adds ``result``)."""
        return {
            "endpoint": self.endpoint,
            "query": self.query if self.authorised() else redact_token(self.query),
            "click": self.once("click"),
            "exto": self.once("exto"),
            "status": self.status,
        }

    def move(self) -> ProMove:
        """What the call does to its Pro lead; ApiError when Pro would refuse it."""
        if not self.utf8:
            raise ApiError(400, "the query string must be UTF-8 (percent-encode other bytes)")
        # The token first: a caller without it learns nothing about the rest.
        if len(self.args.getlist("token")) > 1:
            raise ApiError(400, "token must be given once")
        if not self.authorised():
            raise ApiError(403, FORBIDDEN)
        names = _PARAMETERS[self.endpoint][1:]
        for name in names:
            if len(self.args.getlist(name)) > 1:
                raise ApiError(400, f"{name} must be given once")
        for name in names:
            if name in _REQUIRED and not self.args.get(name, "").strip():
                raise ApiError(400, _REQUIRED[name])
        for name in ("click", "exto"):
            if len(self.args[name]) > MAX_ID_CHARS:
                raise ApiError(400, f"{name} must be at most {MAX_ID_CHARS} characters")
        status = self.status
        if status is None:
            raise ApiError(400, f"status must be one of {', '.join(_MOVES)}")
        auto = self.args.get("auto") or "0"
        if auto not in ("0", "1"):
            raise ApiError(400, "auto must be 1 (create the lead when there is none) or 0")
        click, exto = self.args["click"], self.args["exto"]
        if self.endpoint == "click.json":
            return ProMove(click, exto, status, create=True, move=False)
        return ProMove(click, exto, status, create=auto == "1", move=True)

    @property
    def click_id(self) -> str | None:
        """The journey the call belongs to: ``exto`` when it is a clickId."""
        return parse_click_id(self.once("exto"))


def _error(message: str) -> Response:
    return jsonify(status="error", error=message)


def _answer(endpoint: str) -> Response:
    call = _Call.read(endpoint)
    move = call.move()  # a refusal raises, to be answered and recorded by refused()
    lead_id = _store().record_pro_call(call.click_id, call.record(), move)
    if lead_id is None:  # recorded with this result already
        response = _error(NO_SUCH_PRO_LEAD)
        response.status_code = 404
        return response
    return jsonify(status="ok", id=lead_id)


@bp.get("/click.json", provide_automatic_options=False)
def click_json() -> Response:
    return _answer("click.json")


@bp.get("/status.json", provide_automatic_options=False)
def status_json() -> Response:
    return _answer("status.json")


def refused(message: str) -> Response:
    """A refused call answered in Pro's shape, and recorded when it was to an endpoint.

    The app's error handler calls this for every HTTP error under /api/site, so
    routing errors (405) and oversized bodies (413) are recorded too; it sets
    the status code and headers.
    """
    endpoint = request.path.removeprefix(PREFIX + "/")
    if endpoint in _PARAMETERS:
        call = _Call.read(endpoint)
        _store().record_pro_call(call.click_id, call.record(), message)
    return _error(message)


def shown(params: Mapping[str, Any]) -> dict[str, Any]:
    """An ``altercpa`` event's params as the report shows them: no token at all."""
    query = params.get("query")
    return {**params, "query": redact_token(query)} if isinstance(query, str) else dict(params)
