"""The external landing tracking API (seed 004): click, lead, postback, campaigns, events.

Every invalid request is a 4xx whose JSON ``{"error": ...}`` says what to fix,
and nothing is stored for it: validation finishes before the single write.
Everything stored stays within what SQLite and the pages can take back:
JSON bodies within untrusted.py's limits (nesting, valid Unicode), ids and
``limit``/``after`` within SQLite's INTEGER, payouts and costs finite and
below ``10**12`` in size.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from ..core.journey import EXAMPLE_CLICK_ID, parse_click_id
from ..core.statuses import MapperError, StatusMapper
from . import untrusted
from .store import EVENT_TYPES, Campaign, TrackerStore

bp = Blueprint("api", __name__, url_prefix="/api/v2")

_MAX_ID = 2**63 - 1  # SQLite's INTEGER
_MAX_ID_DIGITS = len(str(_MAX_ID))  # checked before int(), which refuses 4,300 digits with a 500
# Payouts and costs: far beyond any real one, and exact to the cent as a float.
_MAX_AMOUNT = 10**12
_MAX_AMOUNT_TEXT = 40  # characters of a payout or cost sent as text
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_EVENT_ID_LENGTH = 200


class ApiError(HTTPException):
    """A client mistake, answered as JSON by the app's error handler."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _store() -> TrackerStore:
    store: TrackerStore = current_app.extensions["bangi_tracker"]
    return store


def _created(created: bool, **body: Any) -> tuple[Response, int]:
    """201 for a new event; 200 for one already stored, which is success for a retry."""
    return jsonify(status="created" if created else "duplicate", **body), 201 if created else 200


# Reading the request


def _json_body(example: str = '{"clickId": "..."}') -> Any:
    """The request's JSON body, within untrusted.py's limits; an ApiError saying what is wrong.

    ``example`` is a JSON object the messages show.
    """

    def reject_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    def finite_float(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"{text[:20]} is out of range")
        return number

    data = request.get_data(cache=True)
    if not data.strip():
        raise ApiError(400, f"request body is empty: send a JSON object, e.g. {example}")
    try:
        body = json.loads(data, parse_constant=reject_constant, parse_float=finite_float)
    except RecursionError:
        raise ApiError(400, f"request body {untrusted.TOO_DEEP}") from None
    except UnicodeDecodeError:
        raise ApiError(400, "request body must be UTF-8 encoded JSON") from None
    except json.JSONDecodeError as error:
        raise ApiError(400, f"request body must be JSON ({error.msg} at {error.pos})") from None
    except ValueError as error:
        raise ApiError(400, f"request body must be JSON ({error})") from None
    if problem := untrusted.problem(body):
        raise ApiError(400, f"request body {problem}")
    return body


def json_object(example: str = '{"clickId": "..."}') -> dict[str, Any]:
    """The request's JSON body, which must be an object (see ``_json_body``)."""
    body = _json_body(example)
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, e.g. {example}")
    return body


def _from_multidict(values: MultiDict[str, str]) -> dict[str, Any]:
    """Query or form values as strings; a repeated name keeps all its values as a list."""
    return {key: items[0] if len(items) == 1 else items for key, items in values.lists()}


def _params() -> dict[str, Any]:
    """The event's parameters: the query of a GET, else the JSON or form body of a POST."""
    if request.method == "GET":
        return _from_multidict(request.args)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _from_multidict(request.form)
    if request.mimetype in ("", "application/json") or request.mimetype.endswith("+json"):
        return json_object()
    raise ApiError(415, "send POST bodies as application/json (or a form-encoded body)")


# Validating fields


def _fold(name: str) -> str:
    return name.replace("_", "").replace("-", "").casefold()


def _required(params: dict[str, Any], name: str) -> Any:
    if name in params:
        return params[name]
    for key in params:
        if _fold(key) == _fold(name):
            raise ApiError(
                400, f"{name} is required: the API expects camelCase {name}, not {key[:40]}"
            )
    raise ApiError(400, f"{name} is required")


def _click_id(params: dict[str, Any]) -> str:
    value = _required(params, "clickId")
    if isinstance(value, list):
        raise ApiError(400, "clickId must be given once")
    click_id = parse_click_id(value)
    if click_id is None:
        raise ApiError(400, f"clickId must be a UUID such as {EXAMPLE_CLICK_ID}")
    return click_id


def parse_id(value: Any) -> int | None:
    """``value`` as a positive integer SQLite can store, from an int or a string of digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) <= _MAX_ID_DIGITS else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_ID:
        return value
    return None


def _positive_int(value: Any, name: str) -> int:
    number = parse_id(value)
    if number is None:
        raise ApiError(400, f"{name} must be a positive integer of at most {_MAX_ID}")
    return number


def _event_id(params: dict[str, Any]) -> str | None:
    value = params.get("eventId")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_EVENT_ID_LENGTH:
        return value
    raise ApiError(400, f"eventId must be a string of 1 to {_MAX_EVENT_ID_LENGTH} characters")


def _amount(value: Any, name: str) -> float | None:
    """A payout or cost: a JSON number, or a number as text, finite and below 10**12 in size."""
    if value is None:
        return None
    number = None
    if isinstance(value, str) and len(value) <= _MAX_AMOUNT_TEXT:
        with contextlib.suppress(ValueError):  # not a number: refused below
            number = float(value.strip())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Compared before float(), which overflows on a 400-digit int.
        number = float(value) if abs(value) < _MAX_AMOUNT else None
    if number is None or not math.isfinite(number) or abs(number) >= _MAX_AMOUNT:
        raise ApiError(400, f"{name} must be a number below {_MAX_AMOUNT:,} in size")
    return number


def _currency(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _CURRENCY.fullmatch(value.strip().upper()):
        return value.strip().upper()
    raise ApiError(400, "currency must be a three-letter code such as USD")


def _extras(params: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {key: value for key, value in params.items() if key not in fields}


# Endpoints


@bp.post("/track/click", provide_automatic_options=False)
def track_click() -> tuple[Response, int]:
    params = json_object()
    click_id = _click_id(params)
    campaign_id = _positive_int(_required(params, "campaignId"), "campaignId")
    event_id = _event_id(params)
    extras = _extras(params, "clickId", "campaignId")
    created = _store().record_click(click_id, campaign_id, extras, event_id)
    return _created(created, clickId=click_id, campaignId=campaign_id)


@bp.route("/track/lead", methods=["GET", "POST"], provide_automatic_options=False)
def track_lead() -> tuple[Response, int]:
    params = _params()
    click_id = _click_id(params)
    event_id = _event_id(params)
    created = _store().record_lead(click_id, _extras(params, "clickId"), event_id)
    return _created(created, clickId=click_id)


@bp.route("/track/postback", methods=["GET", "POST"], provide_automatic_options=False)
def track_postback() -> tuple[Response, int]:
    params = _params()
    click_id = _click_id(params)
    event_id = _event_id(params)
    payout = _amount(params.get("payout"), "payout")
    currency = _currency(params.get("currency"))
    created = _store().record_postback(
        click_id, _extras(params, "clickId"), event_id, payout, currency
    )
    return _created(created, clickId=click_id)


def _campaign_id(raw: str) -> int:
    return _positive_int(raw, "campaign id")


@bp.put("/campaigns/<raw_id>")
def put_campaign(raw_id: str) -> tuple[Response, int]:
    campaign_id = _campaign_id(raw_id)
    body = json_object()
    known = {"name", "statusMapper", "cost", "currency"}
    for key in body:
        if key not in known:
            hint = next((k for k in known if _fold(k) == _fold(key)), None)
            raise ApiError(
                400,
                f"unknown field {key[:40]}"
                + (f": the API expects camelCase {hint}" if hint else ""),
            )
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise ApiError(400, "name must be a string of at most 200 characters")
    mapper = None
    if body.get("statusMapper") is not None:
        try:
            mapper = StatusMapper.from_json(body["statusMapper"])
        except MapperError as error:
            raise ApiError(400, str(error)) from None
    cost = _amount(body.get("cost"), "cost")
    if cost is not None and cost < 0:
        raise ApiError(400, "cost must not be negative")
    campaign = Campaign(campaign_id, name, mapper, cost, _currency(body.get("currency")))
    created = _store().put_campaign(campaign)
    return jsonify(campaign.to_json()), 201 if created else 200


@bp.get("/campaigns/<raw_id>")
def get_campaign(raw_id: str) -> Response:
    campaign = _store().get_campaign(_campaign_id(raw_id))
    if campaign is None:
        raise ApiError(404, "no campaign with this id")
    return jsonify(campaign.to_json())


@bp.get("/events")
def list_events() -> Response:
    """Recorded events, oldest first; page with ``after`` (an event id) and ``limit``."""
    args = request.args
    click_id = None
    if "clickId" in args:
        click_id = parse_click_id(args["clickId"])
        if click_id is None:
            raise ApiError(400, f"clickId must be a UUID such as {EXAMPLE_CLICK_ID}")
    campaign_id = _positive_int(args["campaignId"], "campaignId") if "campaignId" in args else None
    event_type = args.get("type")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ApiError(400, f"type must be one of {', '.join(EVENT_TYPES)}")
    limit = _positive_int(args.get("limit", "1000"), "limit")
    if limit > 10_000:
        raise ApiError(400, "limit must be at most 10000")
    after = _positive_int(args["after"], "after") if "after" in args else 0
    events = _store().events(
        click_id=click_id, campaign_id=campaign_id, type=event_type, after=after, limit=limit
    )
    next_after = events[-1]["id"] if len(events) == limit else None
    return jsonify(events=events, next=next_after)
