"""clickId parsing and the journey cookie."""

from __future__ import annotations

import time
import types
import uuid

import pytest

from bangi_landing.click_id import JourneyCookie, parse_click_id

SECRET = "cookie-secret-0123456789"
CLICK = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"


def request_with(cookie: JourneyCookie, header: str) -> dict[str, str]:
    return {"HTTP_COOKIE": f"other=1; {header.split(';', 1)[0]}"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (CLICK, CLICK),
        (CLICK.upper(), CLICK),
        (" " + CLICK, None),
        ("urn:uuid:" + CLICK, None),
        (CLICK.replace("-", ""), None),
        (None, None),
        (42, None),
        ("", None),
    ],
)
def test_parse_click_id(value: object, expected: str | None) -> None:
    assert parse_click_id(value) == expected


def test_cookie_round_trip_and_flags() -> None:
    cookie = JourneyCookie(SECRET)
    header = cookie.header(CLICK, secure=True)
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header
    assert cookie.load(request_with(cookie, header)) == CLICK


def test_cookie_from_another_key_is_refused() -> None:
    header = JourneyCookie("another-secret-0123456789").header(CLICK, secure=False)
    assert JourneyCookie(SECRET).load(request_with(JourneyCookie(SECRET), header)) is None


def test_expiry_is_checked_even_for_a_remembered_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    cookie = JourneyCookie(SECRET, max_age=100)
    environ = request_with(cookie, cookie.header(CLICK, secure=False))
    assert cookie.load(environ) == CLICK  # verified and remembered
    later = time.time() + 101
    monkeypatch.setattr("bangi_landing.click_id.time", types.SimpleNamespace(time=lambda: later))
    assert cookie.load(environ) is None


def test_each_visitor_gets_their_own_click_id() -> None:
    cookie = JourneyCookie(SECRET)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert cookie.load(request_with(cookie, cookie.header(first, secure=False))) == first
    assert cookie.load(request_with(cookie, cookie.header(second, secure=False))) == second
