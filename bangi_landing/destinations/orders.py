"""Orders to a CPA network: the customer's name and phone, with ``sub1``, delivered durably.

::

    NetworkOrders(
        "https://network.example/api/orders?token={env:NETWORK_TOKEN}",
        fields={"offer_id": 42, "name": "{name}", "phone": "{phone}", "sub2": "{source}"},
        success=("status", "ok"),
        order_id="order_id",
    )

A field's value is a constant (any JSON value) or text with macros in braces:
``{clickId}``, ``{eventId}``, ``{ip}``, ``{userAgent}``, ``{referer}``, any
field of the submitted form (``{name}``, ``{phone}``), or any landing URL
parameter, which is then kept for the journey (``{source}``). A macro with no
value is empty, and logged once per name. The clickId goes as ``sub1`` unless
the fields say where it goes. The URL and header values may name environment
variables, ``{env:NAME}``, read once at start-up, so a token stays out of code.

Every request carries ``Idempotency-Key: <eventId>``, the same for every
attempt of a journey's one order, for networks that de-duplicate on it.

An answer below 300 that passes the success rule is the network's; 5xx,
408, 429, timeouts and connection errors are retried; any other 4xx, or a
2xx that fails the rule, is dead at once, with the network's reason (the
order's own values cut out of it).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from ..core.privacy import is_personal_field, is_secret_field
from ..events import ORDER, Event, EventKind
from ..sealed import Sealer
from .base import DEFAULT_TIMEOUT, DeliveryError, HttpDestination, public_url

logger = logging.getLogger("bangi_landing")

_MACRO = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
_ENV = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
# Macros the order itself fills: never kept from the landing URL.
BUILT_IN_MACROS = frozenset({"clickId", "eventId", "ip", "userAgent", "referer"})
DEAD_ORDER_RETENTION = 7 * 24 * 3600.0
# An order's values shorter than this are not cut from a network's reason: "1" is no secret.
_MIN_REDACTED = 3


class NetworkOrders(HttpDestination):
    """Posts each order (a lead's submit, fields unfiltered) to a CPA network's order API.

    :param url: the network's order URL, http(s); may hold ``{env:NAME}``.
    :param method: ``"POST"`` (the fields in the body) or ``"GET"`` (in the query).
    :param body: ``"form"`` (urlencoded) or ``"json"``, for POST.
    :param fields: what the network gets: names mapped to constants or macro text.
    :param headers: extra request headers (a token); values may hold ``{env:NAME}``.
    :param success: ``(field, value)``: a 2xx answer is an order only when its JSON
        body's ``field`` equals ``value`` (networks that answer 200 with an error);
        ``None``: any 2xx.
    :param order_id: the answer's JSON field holding the network's order id, logged
        at INFO with the clickId.
    :param keep_dead: seconds a dead order (refused, or undelivered past the
        sender's ``max_age``) is kept after it happened, for ``bangi-landing outbox
        status`` and ``retry-dead``; then its row, personal data and all, is
        deleted (checked hourly by the sender). Default: 7 days.

    The order's personal data reaches this destination sealed (see
    :mod:`bangi_landing.sealed`); the landing it is passed to gives it the key.
    """

    name = "orders"
    kinds: frozenset[EventKind] = frozenset({ORDER})

    def __init__(
        self,
        url: str,
        *,
        method: Literal["POST", "GET"] = "POST",
        body: Literal["form", "json"] = "form",
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        success: tuple[str, Any] | None = None,
        order_id: str | None = None,
        keep_dead: float = DEAD_ORDER_RETENTION,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        # config imports the destinations: its error is imported when one is configured.
        from ..config import ConfigurationError

        super().__init__(timeout=timeout)
        if method not in ("POST", "GET"):
            raise ConfigurationError(
                f"NetworkOrders method (order_method, BANGI_ORDER_METHOD) must be POST or GET,"
                f" not {method!r}"
            )
        if body not in ("form", "json"):
            raise ConfigurationError(
                "NetworkOrders body (order_body, BANGI_ORDER_BODY) must be 'form' or 'json',"
                f" not {body!r}"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "NetworkOrders url (order_url, BANGI_ORDER_URL) must be an http(s) URL"
                " such as https://network.example/api/orders"
            )
        self.method, self.body, self.success, self.order_id = method, body, success, order_id
        self.keep_dead = keep_dead
        self._url = _with_env(url, "NetworkOrders url (order_url, BANGI_ORDER_URL)")
        self._headers = {
            name: _with_env(
                value, f"NetworkOrders headers[{name!r}] (order_headers, BANGI_ORDER_HEADERS)"
            )
            for name, value in (headers or {}).items()
        }
        self.fields: dict[str, Any] = dict(fields or {})
        texts = [v for v in self.fields.values() if isinstance(v, str)]
        if "sub1" not in self.fields and not any("{clickId}" in t for t in texts):
            self.fields["sub1"] = "{clickId}"
        # The macros the fields name: ``serve --check`` tells which no form sends.
        self.macros = frozenset(name for text in texts for name in _MACRO.findall(text))
        # Landing URL parameters are kept in the journey cookie and the outbox in clear:
        # a name, a phone or a secret is taken from the submit only, never kept from a URL.
        self.journey_params = tuple(
            sorted(
                name
                for name in self.macros - BUILT_IN_MACROS
                if not is_personal_field(name) and not is_secret_field(name)
            )
        )
        # The URL before its env macros are filled: host and path, never a token.
        self.key = orders_key(url)
        self._sealer: Sealer | None = None
        self._told_missing: set[str] = set()

    def __repr__(self) -> str:
        return f"NetworkOrders(key={self.key!r}, fields={sorted(self.fields)!r})"

    def use_sealer(self, sealer: Sealer) -> None:
        """Open orders with ``sealer`` (the landing's, derived from its ``secret_key``)."""
        self._sealer = sealer

    def values_for(self, event: Event) -> dict[str, Any]:
        """The fields the network gets for ``event``, macros filled."""
        if self._sealer is None:
            raise DeliveryError("NetworkOrders is not part of a landing", retryable=False)
        try:
            sealed = self._sealer.open(str(event.params.get("sealed", "")))
        except ValueError as error:
            raise DeliveryError(f"the order cannot be read: {error}", retryable=False) from None
        submitted = sealed.get("fields")
        values: dict[str, Any] = {**event.journey, **(submitted or {})}
        for name in ("ip", "userAgent", "referer"):
            values[name] = sealed.get(name)
        values["clickId"], values["eventId"] = event.click_id, event.event_id
        return {name: self._fill(value, values) for name, value in self.fields.items()}

    def _fill(self, value: Any, values: Mapping[str, Any]) -> Any:
        if not isinstance(value, str):
            return value

        def macro(match: re.Match[str]) -> str:
            found = values.get(match[1])
            if isinstance(found, list):  # a repeated field: the first one
                found = found[0] if found else None
            if found is None or isinstance(found, dict):
                if match[1] not in self._told_missing:
                    self._told_missing.add(match[1])
                    logger.info(
                        "bangi-landing: orders have no {%s}: sent as an empty value", match[1]
                    )
                return ""
            return str(found)

        return _MACRO.sub(macro, value)

    def deliver(self, event: Event) -> None:
        values = self.values_for(event)
        headers = {**self._headers, "Idempotency-Key": event.event_id}
        url, data, content_type = self._url, None, None
        if self.method == "GET":
            url += ("&" if "?" in url else "?") + urlencode(values)
        elif self.body == "json":
            data, content_type = json.dumps(values).encode(), "application/json"
        else:
            data = urlencode(values).encode()
            content_type = "application/x-www-form-urlencoded"
        try:
            response = self.request(
                self.method, url, body=data, content_type=content_type, headers=headers
            )
        except DeliveryError as error:
            raise error.reworded(_redact(str(error), values)) from None
        if self.success is None and self.order_id is None:
            return
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if self.success is not None:
            field, wanted = self.success
            if not isinstance(answer, dict) or answer.get(field) != wanted:
                said = _reason(answer) or f"{field} is not {wanted!r}"
                message = f"refused: {_redact(said, values)[:200]}"
                raise DeliveryError(message, retryable=False, url=public_url(url))
        if self.order_id is not None and isinstance(answer, dict) and self.order_id in answer:
            logger.info(
                "bangi-landing: order %s of journey %s taken by %s",
                str(answer[self.order_id])[:100],
                event.click_id,
                public_url(url),
            )


def orders_key(url: str) -> str:
    """The outbox's name for the orders to ``url``: its host and path, never a token."""
    return f"orders {public_url(url)}"


def _with_env(text: str, option: str) -> str:
    """``text`` with each ``{env:NAME}`` replaced by that environment variable."""
    from ..config import ConfigurationError

    def value(match: re.Match[str]) -> str:
        found = os.environ.get(match[1])
        if found is None:
            raise ConfigurationError(f"{option} names {{env:{match[1]}}}, which is not set")
        return found

    return _ENV.sub(value, text)


def _reason(answer: Any) -> str | None:
    """The network's own words for a refusal, when its JSON answer has them."""
    if isinstance(answer, dict):
        for name in ("error", "message", "reason", "status"):
            if isinstance(answer.get(name), str | int):
                return str(answer[name])
    return None


def _redact(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with the order's values (a phone the network echoes) cut out."""
    for value in sorted(map(str, values.values()), key=len, reverse=True):
        if len(value) >= _MIN_REDACTED:
            text = text.replace(value, "<order field>")
    return text
