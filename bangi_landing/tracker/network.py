"""A fake CPA network, so a landing's order and the postback that follows can be tried.

A real landing forwards each order to a CPA network with the visitor's clickId
as ``sub1``; the network later reports the order's fate to the tracker with a
postback keyed by that clickId. This blueprint plays the network:

- ``POST /network/orders`` takes an order (form-encoded or JSON) that must
  carry ``sub1``, a clickId, stores it as sent and answers like a real
  network's API: ``{"status": "ok", "id": 17}``. An order whose
  ``Idempotency-Key`` header was seen before (a retry) is not stored again:
  the answer is the first one's id, with ``"duplicate": true``;
- a failure switch makes the intake fail as real networks do, to try the
  landing's retries: ``500`` (answers 500, takes nothing), ``timeout`` (takes
  the order, then answers only after ``BANGI_NETWORK_STALL`` seconds, default
  15: past a sender's read timeout, as when an answer is lost), ``error``
  (answers 200 ``{"status": "error", ...}``, takes nothing). The buttons at the
  top of ``GET /network`` set it for every order (``BANGI_NETWORK_FAILURE``
  holds it); ``?fail=MODE`` on the intake's URL sets it for that request
  (``?fail=ok`` for none), so a landing can be pointed at a failing network;
- ``GET /network`` lists the orders, each with buttons to approve, hold,
  reject or trash it;
- a button sends the postback for real, an HTTP GET to the configured
  postback URL.

Register it on the tracker app: ``app.register_blueprint(network.bp)``.
Configuration: ``BANGI_NETWORK_POSTBACK_URL`` (``create_app``'s
``network_postback_url``; the CLI makes it this tracker's own API, see
``tracker_postback_url``), a template with the placeholders ``{sub1}``,
``{status}``, ``{payout}`` and ``{offer_id}``; without it the buttons record
the status and send nothing. The URL comes from configuration only, never from
the request: a client's ``Host`` header must not choose where the tracker sends
requests. ``BANGI_NETWORK_PAYOUT`` is the payout of an approved or held order
(default ``"10"``). Secret URL parameters (the demo relay's ``secret``) are
blanked wherever the page or the log shows the URL.
"""

from __future__ import annotations

import json
import logging
import re
import time
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

from ..core.journey import EXAMPLE_CLICK_ID, parse_click_id
from ..serving import RedactSecrets
from .api import ApiError, json_object, parse_id
from .store import TrackerStore

log = logging.getLogger(__name__)
log.addFilter(RedactSecrets())  # a failed postback's URL, in our message and in the error's

bp = Blueprint("network", __name__, template_folder="templates")

POSTBACK_URL: Final = "BANGI_NETWORK_POSTBACK_URL"  # the config keys
PAYOUT: Final = "BANGI_NETWORK_PAYOUT"
FAILURE: Final = "BANGI_NETWORK_FAILURE"
STALL: Final = "BANGI_NETWORK_STALL"
DEFAULT_STALL: Final = 15.0
# How the intake answers, as the failure switch's buttons label each way.
FAILURES: Final = {
    "ok": "Take orders",
    "500": "Answer 500",
    "timeout": "Time out",
    "error": "Answer 200 with an error",
}
NOT_SENT: Final = "not sent: no postback URL configured"
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
_PLACEHOLDER = re.compile(r"\{(sub1|status|payout|offer_id)\}")
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
    """The order intake and the buttons' endpoint answer errors (413 and 415 too) as JSON."""
    if request.endpoint not in (
        "network.receive_order",
        "network.send_postback",
        "network.set_failure",
    ):
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
        return json_object(example='{"sub1": "..."}')  # within the API's limits
    raise ApiError(415, "send the order form-encoded or as JSON")


@bp.post("/network/orders")
def receive_order() -> tuple[Response, int]:
    fields = _order_fields()
    if "sub1" not in fields:
        raise ApiError(400, "sub1 is required: the clickId the landing page got from the tracker")
    click_id = parse_click_id(fields["sub1"])
    if click_id is None:
        raise ApiError(400, f"sub1 must be a clickId, a UUID such as {EXAMPLE_CLICK_ID}")
    failure = _failure()
    if failure == "500":
        raise ApiError(500, "the network is down (its failure switch says 500)")
    if failure == "error":  # as networks that answer 200 either way do
        return jsonify(status="error", error="order refused (the failure switch says error)"), 200
    key = request.headers.get("Idempotency-Key") or None
    order_id, new = _store().add_network_order(click_id, fields, key)
    if failure == "timeout":  # taken, but the answer comes after the sender gave up
        time.sleep(float(current_app.config.get(STALL, DEFAULT_STALL)))
    if not new:
        return jsonify(status="ok", id=order_id, duplicate=True), 200
    return jsonify(status="ok", id=order_id), 201


def _failure() -> str:
    """How this order is answered: the URL's ``?fail=``, else the page's switch."""
    failure = request.args.get("fail") or current_app.config.get(FAILURE) or "ok"
    if failure not in FAILURES:
        raise ApiError(400, f"fail must be one of {', '.join(FAILURES)}")
    return str(failure)


@bp.post("/network/failure")
def set_failure() -> BaseResponse:
    """The failure switch's buttons: how the intake answers every order from now on."""
    _same_origin()
    failure = request.form.get("failure", "")
    if failure not in FAILURES:
        abort(400, f"failure must be one of {', '.join(FAILURES)}")
    current_app.config[FAILURE] = failure
    log.warning("The fake network's order intake now answers: %s", FAILURES[failure])
    return redirect(url_for("network.orders_page"), 303)


def _same_origin() -> None:
    """The page's buttons are same-origin forms: refuse a POST another site's page made."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != request.host_url.rstrip("/"):
        abort(403, "postbacks and the failure switch are set from this tracker's /network page")


# The postback


def tracker_postback_url(tracker_url: str) -> str:
    """The postback URL template of the tracker at ``tracker_url`` (its own API)."""
    return (
        f"{tracker_url.rstrip('/')}/api/v2/track/postback"
        "?clickId={sub1}&status={status}&payout={payout}&offer_id={offer_id}"
    )


def build_postback_url(template: str, *, sub1: str, status: str, payout: str, offer_id: str) -> str:
    """``template`` with its placeholders filled in, URL-encoded."""
    values = {
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


def _redacted(text: str) -> str:
    """``text`` with the values of secret URL parameters blanked, as the request log has them."""
    return RedactSecrets.PATTERN.sub(r"\1<redacted>", text)


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


@bp.post("/network/orders/<raw_id>/postback")  # any id, checked below: a 404, never a 500
def send_postback(raw_id: str) -> BaseResponse:
    _same_origin()
    status = request.form.get("status", "")
    if status not in POSTBACK_STATUSES:
        abort(400, f"status must be one of {', '.join(POSTBACK_STATUSES)}")
    order_id = parse_id(raw_id)
    order = _store().network_order(order_id) if order_id is not None else None
    if order_id is None or order is None:
        abort(404, "no such order")
    template = current_app.config.get(POSTBACK_URL)
    result = NOT_SENT
    if template:
        payout = current_app.config.get(PAYOUT, DEFAULT_PAYOUT)
        url = build_postback_url(
            template,
            sub1=order["clickId"],
            status=status,
            payout=str(payout) if status in _PAID else "0",
            offer_id=_text(_fields(order).get("offer_id")),
        )
        result = _send(url)
    _store().set_network_postback(order_id, status, result)
    return redirect(url_for("network.orders_page"), 303)


# The orders page


@dataclass(frozen=True)
class OrderRow:
    id: int
    received_date: str
    received_time: str
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


def _fields(order: dict[str, Any]) -> dict[str, Any]:
    """The order's fields; stored ones that cannot be read back show as one ``params``."""
    params = order["params"]
    return params if isinstance(params, dict) else {"params": params}


def _order_row(order: dict[str, Any], journeys: bool) -> OrderRow:
    params = _fields(order)
    return OrderRow(
        id=order["id"],
        received_date=order["receivedAt"][:10],
        received_time=order["receivedAt"][11:19],
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
        postback_url=_redacted(current_app.config.get(POSTBACK_URL) or ""),
        payout=current_app.config.get(PAYOUT, DEFAULT_PAYOUT),
        intake_url=url_for("network.receive_order", _external=True),
        example_click_id=EXAMPLE_CLICK_ID,
        report_url=url_for("report.index") if journeys else None,
        failures=FAILURES,
        failure=current_app.config.get(FAILURE) or "ok",
    )
