"""A fake CPA network, so a landing's order and the postback that follows can be tried.

A real landing forwards each order to a CPA network with the visitor's clickId
as ``sub1``; the network later reports the order's fate to the tracker with a
postback keyed by that clickId. This blueprint plays the network:

- ``POST /network/orders`` takes an order (form-encoded or JSON) that must
  carry ``sub1``, a clickId, and stores it as sent;
- ``GET /network`` lists the orders, each with buttons to approve, hold,
  reject or trash it;
- a button sends the postback for real, an HTTP GET to the postback URL
  (by default this tracker's ``/api/v2/track/postback``).

Register it on the tracker app: ``app.register_blueprint(network.bp)``.
Configuration (all optional): ``BANGI_NETWORK_POSTBACK_URL``, a template with
the placeholders ``{tracker}``, ``{sub1}``, ``{status}``, ``{payout}`` and
``{offer_id}``; ``BANGI_NETWORK_PAYOUT``, the payout of an approved or held
order (default ``"10"``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import requests
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from ..click_id import EXAMPLE_CLICK_ID, parse_click_id
from .api import ApiError
from .store import TrackerStore

log = logging.getLogger(__name__)

bp = Blueprint("network", __name__, template_folder="templates")

DEFAULT_POSTBACK_URL: Final = (
    "{tracker}/api/v2/track/postback"
    "?clickId={sub1}&status={status}&payout={payout}&offer_id={offer_id}"
)
DEFAULT_PAYOUT: Final = "10"
POSTBACK_TIMEOUT: Final = (3, 5)  # seconds to connect, seconds to read
ORDERS_SHOWN: Final = 200

# The network's own status names, as its buttons label them. Held (pending)
# orders carry the payout too: the tracker counts them as expected money.
POSTBACK_STATUSES: Final = {
    "approved": "Approve",
    "pending": "Hold",
    "rejected": "Reject",
    "trash": "Trash",
}
_PAID: Final = frozenset({"approved", "pending"})
_PLACEHOLDER = re.compile(r"\{(tracker|sub1|status|payout|offer_id)\}")
_VALUE_CHARS = 60

# The page needs no script and posts only to itself. Referrer-Policy stays
# same-origin so the buttons' POSTs carry the Origin checked below.
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _store() -> TrackerStore:
    store: TrackerStore = current_app.extensions["bangi_tracker"]
    return store


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(HTTPException)
def _order_error(error: HTTPException) -> HTTPException | Response:
    """The order intake is an API: its errors (including 413 and 415) are JSON."""
    if request.endpoint != "network.receive_order":
        return error
    message = error.description
    if error.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = f"order body is larger than {limit // 1024} KiB" if limit else "body too large"
    response = jsonify(error=message)
    response.status_code = error.code or 500
    return response


# The order intake


def _order_fields() -> dict[str, Any]:
    """The order as sent: form values as strings (a repeated name as a list), or a JSON object."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {key: items[0] if len(items) == 1 else items for key, items in request.form.lists()}
    if request.mimetype == "application/json" or request.mimetype.endswith("+json"):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, 'send the order as a JSON object, e.g. {"sub1": "..."}')
        return body
    raise ApiError(415, "send the order form-encoded or as JSON")


@bp.post("/network/orders")
def receive_order() -> tuple[Response, int]:
    fields = _order_fields()
    if "sub1" not in fields:
        raise ApiError(400, "sub1 is required: the clickId the landing page got from the tracker")
    click_id = parse_click_id(fields["sub1"])
    if click_id is None:
        raise ApiError(400, f"sub1 must be a clickId, a UUID such as {EXAMPLE_CLICK_ID}")
    order_id = _store().add_network_order(click_id, fields)
    return jsonify(status="ok", id=order_id), 201


# The postback


def build_postback_url(
    template: str, *, tracker: str, sub1: str, status: str, payout: str, offer_id: str
) -> str:
    """``template`` with its placeholders filled in; all but ``{tracker}`` URL-encoded."""
    values = {
        "tracker": tracker.rstrip("/"),
        "sub1": quote(sub1, safe=""),
        "status": quote(status, safe=""),
        "payout": quote(payout, safe=""),
        "offer_id": quote(offer_id, safe=""),
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _text(value: Any) -> str:
    """A field value as text: a string as is, a repeated field's first value, JSON otherwise."""
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _send(url: str) -> str:
    """GET the postback URL; what happened, for the orders page."""
    try:
        response = requests.get(url, timeout=POSTBACK_TIMEOUT, allow_redirects=False)
    except requests.RequestException as error:
        log.warning("Postback to %s failed: %s", url, error)
        return f"failed: {type(error).__name__}"
    if not response.ok:
        log.warning("Postback to %s answered %s: %.200s", url, response.status_code, response.text)
    return f"HTTP {response.status_code}"


@bp.post("/network/orders/<int:order_id>/postback")
def send_postback(order_id: int) -> BaseResponse:
    # The buttons are a same-origin form: refuse a POST another site's page made.
    origin = request.headers.get("Origin")
    if origin is not None and origin != request.host_url.rstrip("/"):
        abort(403, "postbacks are sent from this tracker's /network page")
    status = request.form.get("status", "")
    if status not in POSTBACK_STATUSES:
        abort(400, f"status must be one of {', '.join(POSTBACK_STATUSES)}")
    order = _store().network_order(order_id)
    if order is None:
        abort(404, "no such order")
    payout = current_app.config.get("BANGI_NETWORK_PAYOUT", DEFAULT_PAYOUT)
    url = build_postback_url(
        current_app.config.get("BANGI_NETWORK_POSTBACK_URL") or DEFAULT_POSTBACK_URL,
        tracker=request.host_url,
        sub1=order["clickId"],
        status=status,
        payout=str(payout) if status in _PAID else "0",
        offer_id=_text(order["params"].get("offer_id")),
    )
    _store().set_network_postback(order_id, status, _send(url))
    return redirect(url_for("network.orders_page"), 303)


# The orders page


@dataclass(frozen=True)
class OrderRow:
    id: int
    received: str
    click_id: str
    journey_url: str | None
    name: str
    phone: str
    offer_id: str
    extras: list[tuple[str, str]]
    postback_status: str | None
    postback_result: str | None
    postback_time: str


def _short(text: str) -> str:
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _time(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else ""


def _order_row(order: dict[str, Any], journeys: bool) -> OrderRow:
    params: dict[str, Any] = order["params"]
    return OrderRow(
        id=order["id"],
        received=_time(order["receivedAt"]),
        click_id=order["clickId"],
        journey_url=url_for("report.journey", raw_click_id=order["clickId"]) if journeys else None,
        name=_short(_text(params.get("name"))),
        phone=_short(_text(params.get("phone"))),
        offer_id=_short(_text(params.get("offer_id"))),
        extras=[
            (_short(str(key)), _short(_text(value)))
            for key, value in params.items()
            if key not in ("sub1", "name", "phone", "offer_id")
        ],
        postback_status=order["postbackStatus"],
        postback_result=order["postbackResult"],
        postback_time=_time(order["postbackAt"]),
    )


@bp.get("/network")
def orders_page() -> str:
    store = _store()
    journeys = "report" in current_app.blueprints
    return render_template(
        "network.html",
        orders=[_order_row(order, journeys) for order in store.network_orders(ORDERS_SHOWN)],
        total=store.count_network_orders(),
        shown=ORDERS_SHOWN,
        statuses=POSTBACK_STATUSES,
        postback_url=current_app.config.get("BANGI_NETWORK_POSTBACK_URL") or DEFAULT_POSTBACK_URL,
        payout=current_app.config.get("BANGI_NETWORK_PAYOUT", DEFAULT_PAYOUT),
        intake_url=url_for("network.receive_order", _external=True),
        example_click_id=EXAMPLE_CLICK_ID,
        report_url=url_for("report.index") if journeys else None,
    )
