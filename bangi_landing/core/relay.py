"""The postback relay: a network's status postback in, the same status out to every destination.

A CPA network reports an order's fate to a URL it was given, keyed by the
clickId it received as ``sub1``. Point it at the landing::

    https://landing.example.com/bangi/postback?secret=...&clickId={sub1}&status={status}&payout={payout}

The relay checks the secret (constant time), reads the postback in the Bangi
tracker's format (``clickId``, ``status``, ``payout``, any extras; GET query,
POST form or POST JSON), maps the status and hands it to
:meth:`BangiLanding.report_status`, which fans it out: the Bangi tracker's
``/api/v2/track/postback`` and AlterCPA Pro's ``status.json``. A postback
relayed twice is one status change everywhere.

The secret is checked before anything else is read. Everything forwarded is
checked as the tracker will check it (a three-letter ``currency``, a payout no
larger than :data:`MAX_PAYOUT`, extras that are flat text, numbers or
booleans), so that a postback the relay accepts is one the tracker takes.
Every refusal is a 4xx with a JSON ``error`` that names what is wrong and
never repeats what was sent.
"""

from __future__ import annotations

import hmac
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from ..events import Event
from .journey import EXAMPLE_CLICK_ID, parse_click_id
from .statuses import STATUSES, Status, StatusMapper, as_any_status

MAX_BODY = 16 * 1024  # a postback is a few hundred bytes
MAX_PAYOUT = 10**9  # larger is a mistake, or an attack on what stores it
_CURRENCY = re.compile(r"[A-Z]{3}")
_OURS = ("secret", "clickId", "status", "payout")
_STATUS_NAMES = f"{', '.join(STATUSES)} (or hold, approve, cancel, trash)"


class RelayError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


ReportStatus = Callable[..., Event]


class RelayAnswer(NamedTuple):
    """What the relay answers: the door sends it in its protocol."""

    code: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class StatusRelay:
    """The relay endpoint, from a request's parts to an answer; each door mounts it at its path.

    :param secret: the value the ``secret`` parameter must have.
    :param report_status: what takes the status: ``BangiLanding.report_status``.
    :param mapper: maps the network's status values (``{"approved": "accept"}``);
        ours and AlterCPA Pro's names always map to themselves' meaning.
    """

    def __init__(
        self, secret: str, report_status: ReportStatus, *, mapper: StatusMapper | None = None
    ) -> None:
        self._secret = secret.encode()
        self.report_status = report_status
        self.mapper = mapper or StatusMapper("status")

    def answer(
        self, method: str, query: bytes, content_type: str, body: bytes | None
    ) -> RelayAnswer:
        """The answer to one postback.

        :param query: the query string's bytes.
        :param body: the body's bytes (``b""`` for a GET), or None when it is
            over :data:`MAX_BODY` bytes: the door reads no more than that.
        """
        headers: list[tuple[str, str]] = []
        try:
            if method not in ("GET", "POST"):
                headers.append(("Allow", "GET, POST"))
                raise RelayError(405, "use GET or POST")
            params = self._authenticated_params(method, query, content_type, body)
            event = self.report_status(
                _click_id(params),
                self._status(params),
                payout=_payout(params.get("payout")),
                extras=_extras(params),
            )
            code = 202
            answer = {"status": "ok", "clickId": event.click_id, "eventId": event.event_id}
        except RelayError as error:
            code, answer = error.code, {"status": "error", "error": error.message}
        data = json.dumps(answer).encode()
        headers += [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        return RelayAnswer(code, "Accepted" if code == 202 else "Error", headers, data)

    def _authenticated_params(
        self, method: str, query: bytes, content_type: str, body: bytes | None
    ) -> dict[str, Any]:
        """The postback's parameters, once its secret is known to be right.

        The secret is checked before anything else is read: from the query
        when it is there, else from the body, and a body that cannot be read
        without the right secret in the query is a 403, not a parse error.
        """
        params = _once({}, _pairs(query, "the query string must be UTF-8"))
        authenticated = "secret" in params
        if authenticated:
            self._check_secret(params["secret"])
        if method == "POST":
            if body is None:  # the length alone says so
                raise RelayError(413, f"the body is over {MAX_BODY // 1024} KiB")
            try:
                _once(params, _body_params(content_type, body))
            except RelayError:
                if authenticated:
                    raise
                raise RelayError(403, "wrong or missing secret") from None
        if not authenticated:
            self._check_secret(params.get("secret"))
        return params

    def _check_secret(self, given: Any) -> None:
        try:
            right = isinstance(given, str) and hmac.compare_digest(given.encode(), self._secret)
        except UnicodeEncodeError:  # a lone surrogate from JSON: not the secret
            right = False
        if not right:
            raise RelayError(403, "wrong or missing secret")

    def _status(self, params: Mapping[str, Any]) -> Status:
        if params.get(self.mapper.parameter) in (None, ""):
            raise RelayError(400, f"{self.mapper.parameter} is required: one of {_STATUS_NAMES}")
        status = self.mapper.lookup(params) or as_any_status(params[self.mapper.parameter])
        if status is None:
            raise RelayError(400, f"{self.mapper.parameter} must be one of {_STATUS_NAMES}")
        return status


def _pairs(data: bytes, error: str) -> list[tuple[str, str]]:
    """URL-encoded ``data`` as (name, value) pairs; a 400 with ``error`` if not UTF-8."""
    try:
        return parse_qsl(data.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise RelayError(400, error) from None


def _body_params(content_type: str, body: bytes) -> Iterable[tuple[str, Any]]:
    """A POST body's parameters: a JSON object, or a form (urlencoded or multipart)."""
    mimetype, options = parse_options_header(content_type)
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, nested too deep, not UTF-8
            raise RelayError(400, "the body cannot be read") from None
        if not isinstance(data, dict):
            raise RelayError(400, "a JSON body must be an object")
        return data.items()
    if mimetype == "multipart/form-data":
        parser = FormDataParser(max_form_memory_size=MAX_BODY, silent=False)
        try:
            _, form, files = parser.parse(io.BytesIO(body), mimetype, len(body), options)
        except (ValueError, HTTPException):
            raise RelayError(400, "the body cannot be read") from None
        for upload in files.values():
            upload.close()
        return form.items(multi=True)
    return _pairs(body, "the body cannot be read")


def _once(params: dict[str, Any], items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    for key, value in items:
        if key in params:
            raise RelayError(
                400,
                f"{key[:40]!r} is given more than once"
                if key in _OURS
                else "a parameter is given more than once",
            )
        params[key] = value
    return params


def _extras(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters forwarded as they are: text, numbers and booleans the tracker can store."""
    extras = {key: value for key, value in params.items() if key not in _OURS}
    for key, value in extras.items():
        if not _storable(key) or not (value is None or _storable(value)):
            raise RelayError(400, "extra parameters must be text, numbers or booleans")
    currency = extras.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency.strip().upper()):
            raise RelayError(400, "currency must be a three-letter code such as USD")
        extras["currency"] = currency.strip().upper()
    return extras


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate, from JSON's \udfff
            return False
        return True
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    return isinstance(value, float) and math.isfinite(value)


def _click_id(params: Mapping[str, Any]) -> str:
    click_id = parse_click_id(params.get("clickId"))
    if click_id is None:
        raise RelayError(400, f"clickId is required, a UUID such as {EXAMPLE_CLICK_ID}")
    return click_id


def _payout(value: Any) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else value
    except ValueError:
        number = None
    if (
        not isinstance(number, int | float)
        or isinstance(number, bool)
        or not math.isfinite(number)
        or abs(number) > MAX_PAYOUT
    ):
        raise RelayError(400, f"payout must be a number no larger than {MAX_PAYOUT:,}")
    return int(number) if float(number).is_integer() else number
