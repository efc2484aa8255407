"""One visitor's journey through a wrapped landing over real HTTP, and what the tracker got.

Shared by the tests that serve a landing in different ways (gunicorn, waitress,
Bottle, a real browser): whatever serves it, a landing page view gets the
journey cookie and the clickId in its order form, the order is accepted, and
the tracker ends up with one click and one lead under that clickId.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import requests

from .test_demo_e2e import eventually

SUB1 = re.compile(r'<input type="hidden" name="sub1" value="([0-9a-f-]{36})"(?: /)?>')
# The middleware puts the field right after the form's start tag.
ORDER_FORM = re.compile(r'<form\b[^>]*\bmethod="post"[^>]*>' + SUB1.pattern)
COOKIE = "bangi_journey"
CUSTOMER = {"name": "Ana Lima", "phone": "+55 11 99999 0000"}

Events = Callable[..., list[dict[str, Any]]]  # GET /api/v2/events with these filters


def land(visitor: requests.Session, url: str, params: Mapping[str, str]) -> tuple[str, str]:
    """A new visitor views the landing from an ad; (its clickId, the page's Server header)."""
    page = visitor.get(f"{url}/", params=params, timeout=10)
    assert page.status_code == 200, page.text
    set_cookie = page.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE}=") and "HttpOnly" in set_cookie
    assert visitor.cookies.get(COOKIE)
    [click_id] = ORDER_FORM.findall(page.text)
    assert SUB1.findall(page.text) == [click_id]  # one form, one field
    return click_id, page.headers.get("Server", "")


def order(visitor: requests.Session, url: str, click_id: str) -> None:
    """The visitor submits the order form, with the fields a browser sends; a thank-you page."""
    response = visitor.post(f"{url}/submit", data={"sub1": click_id, **CUSTOMER}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.url == f"{url}/thanks"
    assert response.history and response.history[0].status_code == 303


def tracked(
    events: Events, click_id: str, params: Mapping[str, str], campaign_id: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until the tracker has the journey's click and lead; check them; (click, lead)."""

    def journey() -> list[dict[str, Any]] | None:
        found = events(clickId=click_id)
        return found if {"click", "lead"} <= {event["type"] for event in found} else None

    found = eventually(journey)
    [click] = [event for event in found if event["type"] == "click"]
    [lead] = [event for event in found if event["type"] == "lead"]
    assert (click["campaignId"], lead["campaignId"]) == (campaign_id, campaign_id)
    assert params.items() <= click["params"].items()  # the ad's query parameters
    sent = str(lead["params"])
    assert not any(value in sent for value in CUSTOMER.values()), (
        "personal data reached the tracker"
    )
    return click, lead
