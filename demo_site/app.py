"""Aurora smart ring: a one-product landing page with an order form.

Copy it as a template for your own landing. It contains no tracking code:
bangi-landing, wrapped around the app, gives each visitor a clickId, reports the
click, adds the hidden ``sub1`` field to the order form and reports the lead.
The one thing the landing does itself is pass that clickId on to the CPA
network with the order, so the network's postbacks come back with it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from urllib.parse import urlencode

import requests
from flask import Flask, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

log = logging.getLogger(__name__)

NETWORK_TIMEOUT = (3, 5)  # connect, read
MAX_NAME = 100
_PHONE = re.compile(r"[0-9 ()+\-]{7,25}")
_PHONE_DIGITS = (7, 15)


def create_app(
    *, network_url: str | None = None, offer_id: str = "1001", secret_key: str | None = None
) -> Flask:
    """The landing; orders go to ``network_url`` (else ``$DEMO_NETWORK_URL``, else nowhere)."""
    app = Flask(__name__)
    app.secret_key = secret_key or secrets.token_hex(32)
    app.config["NETWORK_URL"] = network_url or os.environ.get("DEMO_NETWORK_URL") or None
    app.config["OFFER_ID"] = offer_id

    @app.get("/")
    def index() -> str:
        return _order_page()

    @app.post("/submit")
    def submit() -> Response | tuple[str, int]:
        name = request.form.get("name", "").strip()
        phone = request.form.get("phone", "").strip()
        errors = _validate(name, phone)
        if errors:
            return _order_page(errors=errors, name=name, phone=phone), 400
        # Tracking: the clickId that bangi-landing gave this visitor. The middleware
        # puts it in the WSGI environ; without it, it is the hidden sub1 form field.
        click_id = request.environ.get("bangi.click_id") or request.form.get("sub1")
        _send_order(name=name, phone=phone, click_id=click_id, variant=_variant())
        return redirect(url_for("thanks"), 303)

    @app.get("/thanks")
    def thanks() -> str:
        return render_template("thanks.html")

    return app


def _order_page(**context: object) -> str:
    # Keep the visitor's query string (utm tags, ad ids) on the form, like the
    # PHP example's submit.php?<?php echo http_build_query($_GET); ?>.
    action = url_for("submit")
    if request.args:
        action += "?" + urlencode(list(request.args.items(multi=True)))
    return render_template("index.html", action=action, variant=_variant(), **context)


def _variant() -> str | None:
    """The headline variant of the visitor's journey, when bangi-landing splits the page."""
    variant = request.environ.get("bangi.variant")
    return variant if isinstance(variant, str) else None


def _validate(name: str, phone: str) -> dict[str, str]:
    errors = {}
    if not name:
        errors["name"] = "Please tell us your name."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Please keep your name under {MAX_NAME} characters."
    digits = sum(char.isdigit() for char in phone)
    if not phone:
        errors["phone"] = "Please enter your phone number so we can confirm the order."
    elif not _PHONE.fullmatch(phone) or not _PHONE_DIGITS[0] <= digits <= _PHONE_DIGITS[1]:
        errors["phone"] = "Please enter a valid phone number, e.g. +1 555 123 4567."
    return errors


def _send_order(*, name: str, phone: str, click_id: str | None, variant: str | None) -> None:
    """Forward the order to the CPA network; on failure log it and go on.

    The log line names the clickId, not the customer: keep personal data out of
    logs. A production landing would keep failed orders in its database and
    re-send them.
    """
    url = current_app.config["NETWORK_URL"]
    order = {"name": name, "phone": phone, "offer_id": current_app.config["OFFER_ID"]}
    if click_id:
        # Tracking: send the clickId as sub1, so the network's postbacks carry it back.
        order["sub1"] = click_id
    if variant:
        # And the headline variant as sub2, so the network's own stats can split by it too.
        order["sub2"] = variant
    if not url:
        log.warning("No network URL configured: order (sub1=%s) not forwarded", click_id)
        return
    try:
        response = requests.post(url, data=order, timeout=NETWORK_TIMEOUT)
        response.raise_for_status()
    except requests.RequestException as error:
        log.error("Order (sub1=%s) not forwarded to the network: %s", click_id, error)
