"""Flask integration: ``Bangi(app)`` wraps ``app.wsgi_app`` and adds template helpers.

::

    from bangi_landing.flask import Bangi

    app.config["BANGI_TRACKER_URL"] = "https://dashboard.example.com"
    app.config["BANGI_CAMPAIGN_ID"] = 42
    bangi = Bangi(app)  # or Bangi() now and bangi.init_app(app) in a factory

Configuration keys (each falls back as noted when unset):

``BANGI_TRACKER_URL``, ``BANGI_CAMPAIGN_ID``, ``BANGI_ALTERCPA_URL``,
``BANGI_ALTERCPA_TOKEN``, ``BANGI_ALTERCPA_CLICK_PARAM``, ``BANGI_RELAY_PATH``,
``BANGI_RELAY_SECRET``
    the environment variables of the same names.
``BANGI_SECRET_KEY``
    the environment variable, else the app's ``SECRET_KEY`` (the journey cookie
    is signed under its own salt, so sharing the key is safe).
``BANGI_SUBMIT_PATHS`` (``None``), ``BANGI_FIELD_NAME`` (``"sub1"``),
``BANGI_URL_PARAM`` (``"clickId"``), ``BANGI_LEAD_FIELDS`` (``None``),
``BANGI_MAX_SUBMIT_SIZE`` (64 KiB), ``BANGI_COOKIE_NAME`` (``"bangi_journey"``),
``BANGI_COOKIE_MAX_AGE`` (30 days), ``BANGI_COOKIE_DOMAIN`` (``None``),
``BANGI_LINK_HOSTS`` (``()``), ``BANGI_DURABLE_CLICKS`` (``False``),
``BANGI_POSTBACK_TEMPLATES`` (``None``), ``BANGI_RELAY_STATUSES`` (``None``),
``BANGI_BOT_AGENTS`` (``visitors.BOT_AGENTS``), ``BANGI_IGNORE_PREFETCH`` (``True``),
``BANGI_VARIANTS`` (``None``: ``"a:50, b:50"`` or a dict), ``BANGI_VARIANT_PARAM``
(``"variant"``), ``BANGI_LANDER_PARAM`` (``"lander"``), ``BANGI_ORDER_URL`` and the
other ``BANGI_ORDER_*`` (``None``: no orders forwarded; ``BANGI_ORDER_FIELDS`` is
``"offer_id:42, name:{name}"`` or a dict)
    the :class:`~bangi_landing.BangiLanding` options of the same names; unset, the
    environment variables, then the options' defaults. A list setting given as a
    string is comma-separated: ``"/order, /checkout"``.
``BANGI_OUTBOX``
    the ``outbox`` option: a path, a ``postgresql://`` URL, or ``None`` for memory only; unset, the
    environment variable, else the landing's own file,
    ``~/.local/state/bangi-landing/outbox-<hash>.sqlite3``.

``BANGI_SUBMIT_PATHS`` are the paths the browser posts to, a blueprint's
``url_prefix`` included (``"/order/submit"`` for ``@order.post("/submit")`` on a
blueprint with ``url_prefix="/order"``).

Templates get ``bangi_click_id()``, ``bangi_variant()`` (the split test's
variant: ``{% include "hero_" ~ bangi_variant() ~ ".html" %}``) and
``bangi_hidden_field()``. A CRM hook reports a lead's new status with
``bangi.report_status(click_id, "accept")``. Forms are given the field
automatically; render it yourself only where you want it somewhere in
particular: the middleware then adds no second one.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, current_app, request
from markupsafe import Markup

from . import config
from .core import ENVIRON_KEY, VARIANT_KEY
from .events import Event
from .wsgi import BangiLanding

EXTENSION_KEY = "bangi_landing"


class Bangi:
    """The Flask extension; the middleware it installs is ``app.extensions["bangi_landing"]``."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def report_status(self, click_id: str, status: str, **kwargs: Any) -> Event:
        """The current app's :meth:`BangiLanding.report_status` (for a CRM hook in a view)."""
        middleware: BangiLanding = current_app.extensions[EXTENSION_KEY]
        return middleware.report_status(click_id, status, **kwargs)

    def init_app(self, app: Flask) -> BangiLanding:
        """Wrap ``app.wsgi_app``; keyword options given to ``Bangi()`` win over config."""
        settings = config.from_settings(app.config.get)
        if not settings.get("secret_key") and not os.environ.get("BANGI_SECRET_KEY"):
            settings["secret_key"] = app.config.get("SECRET_KEY")
        settings.update(self.options)
        if not settings.get("secret_key") and not os.environ.get("BANGI_SECRET_KEY"):
            raise config.ConfigurationError(
                "bangi-landing needs a secret key to sign the journey cookie: set"
                ' app.config["SECRET_KEY"] (or app.config["BANGI_SECRET_KEY"], or the'
                " BANGI_SECRET_KEY environment variable) to a random string of at least"
                f" {config.MIN_SECRET_LENGTH} characters"
            )
        middleware = BangiLanding(app.wsgi_app, **settings)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
        app.add_template_global(click_id, "bangi_click_id")
        app.add_template_global(variant, "bangi_variant")
        app.add_template_global(hidden_field, "bangi_hidden_field")
        return middleware


def click_id() -> str | None:
    """The current request's clickId (a view can also read ``request.environ``)."""
    value = request.environ.get(ENVIRON_KEY)
    return value if isinstance(value, str) else None


def variant() -> str | None:
    """The current request's split-test variant; None when the landing has no split test."""
    value = request.environ.get(VARIANT_KEY)
    return value if isinstance(value, str) else None


def hidden_field() -> Markup:
    """``<input type="hidden" name="sub1" value="...">`` for the current journey."""
    middleware: BangiLanding = current_app.extensions[EXTENSION_KEY]
    return Markup('<input type="hidden" name="{}" value="{}">').format(  # escapes both
        middleware.field_name, click_id() or ""
    )
