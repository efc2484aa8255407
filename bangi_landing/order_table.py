"""The ``[order]`` table of a ``landing.toml``: the :class:`NetworkOrders` that ``serve`` adds.

::

    [order]
    url = "https://network.example/api/orders?token={env:NETWORK_TOKEN}"
    body = "json"
    success = ["status", "ok"]
    order_id = "id"

    [order.fields]
    offer_id = 42
    name = "{name}"
    phone = "{phone}"

    [order.headers]
    X-Api-Key = "{env:NETWORK_KEY}"

Its keys are ``NetworkOrders``'s keyword arguments, by the same names; the
pairs (``success``, ``timeout``) are two-item arrays. Each value is checked
here for its type, so that an error names the key in the file rather than
failing in the destination at the first order. Tokens stay out of the file as
in the rest of it: the URL and the headers name their environment variables
(``{env:NAME}``), and a URL with a password in it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import ConfigurationError
from .destinations import NetworkOrders
from .destinations.orders import BUILT_IN_MACROS

TABLE = "order"


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _table(value: Any) -> bool:
    return isinstance(value, dict)


def _text_table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _success(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _timeout(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_number, value))


# Each key: what its value must be (for the message), and the test of it.
_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "url": ('text: "https://network.example/api/orders"', _text),
    "method": ('"POST" or "GET"', _text),
    "body": ('"form" or "json"', _text),
    "fields": ("a table of field names to constants or macro text", _table),
    "headers": ("a table of header names to text", _text_table),
    "success": ('a pair: ["status", "ok"]', _success),
    "order_id": ('text: the answer\'s field holding the order id, "id"', _text),
    "keep_dead": ("a positive number of seconds", _number),
    "timeout": ("a pair of positive seconds, to connect and to read: [3.05, 10]", _timeout),
}


def network_orders(table: Any, settings_file: Path | None) -> NetworkOrders:
    """The destination ``table`` (a ``landing.toml``'s ``[order]``) describes.

    :raises ConfigurationError: a key is unknown, missing or of the wrong type, or a
        ``{env:NAME}`` is unset; the message names the file and the key.
    """
    where = f"{settings_file}: [{TABLE}]"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{settings_file}: {TABLE} must be a table: [{TABLE}] url = ...")
    for key, value in table.items():
        if key not in _KEYS:
            known = ", ".join(_KEYS)
            raise ConfigurationError(f"{where} unknown key {key!r}; the keys are: {known}")
        wanted, fits = _KEYS[key]
        if not fits(value):
            raise ConfigurationError(f"{where} {key} must be {wanted}")
    if "url" not in table:
        raise ConfigurationError(f"{where} url is required: the network's order URL")
    password = urlsplit(table["url"]).password
    if password is not None and not re.fullmatch(r"\{env:\w+\}", password):
        raise ConfigurationError(
            f"{where} url: keep the password out of the file; name its environment variable:"
            " https://user:{env:NETWORK_PASSWORD}@..."
        )
    # TOML has arrays, not tuples: the pairs become the tuples NetworkOrders takes.
    options: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value for key, value in table.items()
    }
    try:
        return NetworkOrders(**options)
    except ConfigurationError as error:
        raise ConfigurationError(f"{where} {error}") from None


def describe(orders: NetworkOrders, form_fields: Iterable[str]) -> list[str]:
    """``serve --check``'s lines on the order: what it sends, and the macros no form fills.

    A constant's value is not shown (a network may take its key in the body);
    the URL is shown without its query (see ``public_url``).
    """
    sent = ", ".join(
        f"{name} = {value}" if isinstance(value, str) and "{" in value else f"{name} (fixed)"
        for name, value in orders.fields.items()
    )
    lines = [f"Order: {orders.method} {orders.key.removeprefix('orders ')}: {sent}"]
    given = set(form_fields)
    for name in sorted(orders.macros - BUILT_IN_MACROS - given):
        if name in orders.journey_params:
            lines.append(
                f"Order field {{{name}}}: no form sends {name}: taken from the landing URL"
                f" (?{name}=...), else sent empty"
            )
        else:
            lines.append(
                f"Warning: order field {{{name}}}: no form sends {name}: always sent empty"
            )
    return lines
