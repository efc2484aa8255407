"""``{% load bangi %}``: the visitor's clickId and the hidden form field that carries it.

``{% bangi_hidden_field %}`` renders ``<input type="hidden" name="sub1" value="...">``
where a form needs it in a particular place; the middleware then adds no second
one (it fills in every other form by itself). ``{% bangi_click_id %}`` is the
clickId. Both need the request in the context (Django's ``request`` context
processor, on by default) and render nothing for a request without a journey
(a crawler), where the middleware adds nothing either.

They read the clickId the middleware left in ``request.META``, so they work
with ``BangiLandingMiddleware`` and with the WSGI class wrapping ``wsgi.py``'s
``application`` alike.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..config import SETTINGS
from ..core import ENVIRON_KEY

register = template.Library()


@register.simple_tag(takes_context=True)
def bangi_click_id(context: template.Context) -> str:
    """The request's clickId, or "" when it has none."""
    request: Any = context.get("request")
    click_id = getattr(request, "META", {}).get(ENVIRON_KEY)
    return click_id if isinstance(click_id, str) else ""


@register.simple_tag(takes_context=True)
def bangi_hidden_field(context: template.Context) -> SafeString:
    """The hidden field carrying the request's clickId, or "" when it has none."""
    click_id = bangi_click_id(context)
    if not click_id:
        return SafeString("")
    name = getattr(settings, "BANGI_FIELD_NAME", None) or SETTINGS["BANGI_FIELD_NAME"].default
    return format_html('<input type="hidden" name="{}" value="{}">', name, click_id)
