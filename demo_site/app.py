"""Aurora smart ring: a one-product landing page with an order form.

Copy it as a template for your own landing. It contains no tracking code and
no order code: bangi-landing, wrapped around the app, gives each visitor a
clickId, reports the click, adds the hidden ``sub1`` field to the order form,
reports the lead, and forwards the order to the CPA network with the clickId
as ``sub1`` (configured on the middleware: ``BANGI_ORDER_URL`` and friends, see
the README's "Forwarding orders"), so the network's postbacks come back with
it. The app checks the order and thanks the customer; a submit it refuses
(400) is no lead and no order.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlencode

from flask import Flask, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

MAX_NAME = 100
_PHONE = re.compile(r"[0-9 ()+\-]{7,25}")
_PHONE_DIGITS = (7, 15)


def create_app(*, secret_key: str | None = None) -> Flask:
    """The landing: the order page, its checks and the thank-you page."""
    app = Flask(__name__)
    app.secret_key = secret_key or secrets.token_hex(32)

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
        # Accepted: bangi-landing forwards the order to the network as the response goes.
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
