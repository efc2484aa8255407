"""The Django middleware in a real Django project (tests/django_project), reporting to the
bundled tracker: served over HTTP on loopback by a WSGI server, and in-process over ASGI
through Django's AsyncClient.

The project has Django's recommended middleware, GZip on top, CSRF on its order form,
and sessions; its views have no tracking code.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import django
import pytest
import requests
from django.conf import settings
from django.core.checks import run_checks
from django.core.handlers.base import BaseHandler
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import AsyncClient, RequestFactory, override_settings
from django.test.client import AsyncClientHandler

from bangi_landing import ConfigurationError
from bangi_landing.core import ENVIRON_KEY
from bangi_landing.core.journey import JourneyCookie
from bangi_landing.core.page_cache import PageCache
from bangi_landing.core.relay import MAX_BODY
from bangi_landing.django import BangiLandingMiddleware, check_middleware_order
from bangi_landing.sender import BackgroundSender

from .conftest import Landing, Tracker
from .django_project import settings as project_settings
from .journey import CUSTOMER, ORDER_FORM, tracked
from .utils import SUB1, Recorder, live_server

# Django's settings are process-wide: configured once, here, from the test project's
# module, rather than through DJANGO_SETTINGS_MODULE, which every subprocess that other
# tests start would inherit.
if not settings.configured:
    settings.configure(**{k: v for k, v in vars(project_settings).items() if k.isupper()})
django.setup()

AD = {"utm_source": "facebook", "ad_name": "video-01"}
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
OURS = "bangi_landing.django.BangiLandingMiddleware"
GZIP = "django.middleware.gzip.GZipMiddleware"
CONDITIONAL_GET = "django.middleware.http.ConditionalGetMiddleware"
RELAY_SECRET = project_settings.BANGI_RELAY_SECRET
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def fields(event: dict[str, Any]) -> dict[str, Any]:
    """What an event carries besides its eventId."""
    return {k: v for k, v in event["params"].items() if k != "eventId"}


def middleware_of(handler: BaseHandler) -> BangiLandingMiddleware:
    """The handler's instance of the middleware.

    Django keeps no list of them; each layer of its chain wraps the next with
    functools.wraps (``__wrapped__``), and each middleware calls ``get_response``.
    """
    step: Any = handler._middleware_chain
    while not isinstance(step, BangiLandingMiddleware):
        step = getattr(step, "__wrapped__", None) or step.get_response
    return step


def flush(handler: BaseHandler) -> None:
    sender = middleware_of(handler).sender
    assert isinstance(sender, BackgroundSender)
    assert sender.flush(10)


def order(
    site: Landing, page: requests.Response, *, files: Any = None, **fields: str
) -> requests.Response:
    """Submit the page's order form as a browser would: its token, its sub1, the customer
    (multipart with ``files``)."""
    [token] = CSRF.findall(page.text)
    [click_id] = SUB1.findall(page.text)
    data = {"csrfmiddlewaretoken": token, "sub1": click_id, "offer": "aurora-ring"}
    return site.post("/order/", data={**data, **CUSTOMER, **fields}, files=files)


@pytest.fixture
def tracker_env(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> Tracker:
    """The tracker, in the environment the middleware reads when Django builds it."""
    monkeypatch.setenv("BANGI_TRACKER_URL", tracker.url)
    monkeypatch.delenv("BANGI_SECRET_KEY", raising=False)  # Django's SECRET_KEY, then
    return tracker


@pytest.fixture
def site(tracker_env: Tracker) -> Iterator[Landing]:
    """The project under a threaded WSGI server; ``events()`` flushes its middleware's sender."""
    handler = get_wsgi_application()
    with live_server(handler) as url, requests.Session() as browser:
        yield Landing(url, middleware_of(handler), tracker_env, browser)


# Over HTTP, under WSGI


def test_a_visitor_lands_orders_and_the_tracker_gets_both(site: Landing) -> None:
    page = site.get("/", params=AD)
    [click_id] = ORDER_FORM.findall(page.text)  # right after the form's start tag
    assert SUB1.findall(page.text) == [click_id]  # one form, one field
    assert site.browser.cookies.get("bangi_journey")
    thanks = order(site, page)
    assert thanks.status_code == 200
    assert thanks.url == f"{site.url}/thanks/"
    assert "Thank you, Ana: your order is in!" in thanks.text  # the session works too
    _, lead = tracked(site.events, click_id, AD, campaign_id=42)
    # no token, no personal data: only the names of the fields held back
    assert fields(lead) == {"offer": "aurora-ring", "withheldFields": ["name", "phone"]}
    assert len(site.tracker.events()) == 2


def test_the_cookie_is_httponly_and_samesite_lax(site: Landing) -> None:
    page = site.get("/")
    cookie = next(c for c in page.raw.headers.getlist("Set-Cookie") if "bangi_journey=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Max-Age=2592000" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http


def test_the_field_goes_in_next_to_the_csrf_token_of_a_gzipped_page(site: Landing) -> None:
    page = site.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip"  # GZip, above us, compressed after us
    [click_id] = SUB1.findall(page.text)
    [token] = CSRF.findall(page.text)
    assert (
        f'<form id="order_form" action="/order/" method="post">'
        f'<input type="hidden" name="sub1" value="{click_id}" />'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
    ) in page.text


def test_a_rewritten_page_is_private_and_varies_on_the_cookie(site: Landing) -> None:
    page = site.get("/")
    assert page.headers["Cache-Control"] == "private"
    vary = {name.strip().lower() for name in page.headers["Vary"].split(",")}
    assert {"cookie", "accept-encoding"} <= vary
    assert page.headers["ETag"].startswith("W/")


def test_content_length_is_that_of_the_rewritten_page(site: Landing) -> None:
    page = site.get("/", headers={"Accept-Encoding": "identity"})
    assert SUB1.findall(page.text)
    assert int(page.headers["Content-Length"]) == len(page.content)
    assert page.text.endswith("</body></html>\n")  # all of it


def test_a_returning_visitor_makes_no_second_click(site: Landing) -> None:
    first = site.get("/", params=AD)
    again = site.get("/")
    assert SUB1.findall(again.text) == SUB1.findall(first.text)
    assert "bangi_journey" not in again.headers.get("Set-Cookie", "")
    assert [event["type"] for event in site.events()] == ["click"]


def test_a_rejected_order_is_no_lead_and_keeps_the_journey(site: Landing) -> None:
    page = site.get("/")
    rejected = order(site, page, phone="no")
    assert rejected.status_code == 400
    assert SUB1.findall(rejected.text) == SUB1.findall(page.text)  # the form again, same journey
    assert [event["type"] for event in site.events()] == ["click"]


def test_an_order_without_the_csrf_token_is_refused_and_no_lead(site: Landing) -> None:
    page = site.get("/")
    [click_id] = SUB1.findall(page.text)
    refused = site.post("/order/", data={"sub1": click_id, **CUSTOMER})
    assert refused.status_code == 403
    assert [event["type"] for event in site.events()] == ["click"]


def test_a_multipart_order_reports_the_lead(site: Landing) -> None:
    page = site.get("/")
    [click_id] = SUB1.findall(page.text)
    thanks = order(site, page, files={"photo": ("ring.txt", b"a ring", "text/plain")})
    [submit] = thanks.history  # the POST, redirected to the thank-you page
    assert submit.request.headers["Content-Type"].startswith("multipart/form-data")
    assert thanks.url == f"{site.url}/thanks/"
    [lead] = site.events(type="lead")
    assert (lead["clickId"], fields(lead)) == (
        click_id,
        {"offer": "aurora-ring", "withheldFields": ["name", "phone"]},
    )


def test_a_malformed_multipart_submit_meets_djangos_own_error(site: Landing) -> None:
    site.get("/")
    # No boundary: Django answers 400, as it would without the middleware (not a CSRF 403).
    response = site.post("/order/", data=b"name=x", headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 400
    assert [event["type"] for event in site.events()] == ["click"]


def test_a_json_order_reports_its_fields_and_the_view_reads_the_same_body(site: Landing) -> None:
    click_id = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
    order = {"sub1": click_id, "offer": "aurora-ring", "quantity": 2, **CUSTOMER}
    response = site.post("/api/order/", json=order)
    assert response.status_code == 201
    assert response.json() == {"received": order}
    [lead] = site.events(type="lead")
    assert (lead["clickId"], fields(lead)) == (
        click_id,
        {"offer": "aurora-ring", "quantity": 2, "withheldFields": ["name", "phone"]},
    )


def test_a_submit_over_max_submit_size_is_a_lead_without_fields(
    site: Landing, caplog: pytest.LogCaptureFixture
) -> None:
    order = {"offer": "aurora-ring", "notes": "x" * (64 * 1024)}
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        response = site.post("/api/order/", json=order)
    assert response.json() == {"received": order}  # the view has it all
    [lead] = site.events(type="lead")
    assert fields(lead) == {}
    assert "not read (limit 65536)" in caplog.text


def test_a_streamed_page_is_rewritten_as_it_streams(site: Landing) -> None:
    page = site.get("/stream/", headers={"Accept-Encoding": "gzip"})
    [click_id, _] = SUB1.findall(page.text)
    field = f'<input type="hidden" name="sub1" value="{click_id}" />'
    assert page.text == (
        '<!doctype html><title>Streamed</title><form id="first" action="/order/" method="post">'
        f'{field}<input name="phone"></form><form id="second" action="/search">{field}</form>'
    )
    assert "Content-Length" not in page.headers
    assert [event["type"] for event in site.events()] == ["click"]


def test_template_tags_place_the_field_and_no_second_is_added(site: Landing) -> None:
    page = site.get("/placed/")
    [click] = site.events()
    field = f'<input type="hidden" name="sub1" value="{click["clickId"]}">'  # the tag's
    injected = f'<input type="hidden" name="sub1" value="{click["clickId"]}" />'
    assert f'<p id="click">{click["clickId"]}</p>' in page.text
    assert page.text.count(field) == 1  # not doubled
    assert f'<input name="phone">{field}</form>' in page.text
    assert f'<form id="auto" action="/search">{injected}</form>' in page.text


def test_a_crawler_passes_straight_through(site: Landing) -> None:
    page = site.get("/placed/", headers={"User-Agent": BOT})
    assert page.status_code == 200
    assert '<p id="click"></p>' in page.text  # no clickId for the tags
    assert not SUB1.findall(page.text)
    assert "bangi_journey" not in page.headers.get("Set-Cookie", "")
    assert site.events() == []


def test_the_relay_answers_through_django(site: Landing) -> None:
    click_id = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
    params = {"secret": RELAY_SECRET, "clickId": click_id, "status": "approve", "payout": "12.5"}
    # A network's POST has no CSRF token: the relay answers before CSRF could refuse it.
    relayed = site.post("/bangi/postback", data=params)
    assert relayed.status_code == 202
    assert relayed.headers["Cache-Control"] == "no-store"
    assert relayed.json()["clickId"] == click_id
    [postback] = site.events(type="postback")
    assert (postback["clickId"], postback["params"]["status"]) == (click_id, "accept")


def test_a_crm_hook_reports_a_status_through_the_request(site: Landing) -> None:
    click_id = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
    assert site.post(f"/crm/{click_id}/", data={"status": "cancel"}).status_code == 200
    [postback] = site.events(type="postback")
    assert (postback["clickId"], postback["params"]["status"]) == (click_id, "reject")


def test_the_relay_refuses_a_wrong_secret(site: Landing) -> None:
    params = {"secret": "wrong", "clickId": "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"}
    refused = site.get("/bangi/postback", params={**params, "status": "approve"})
    assert (refused.status_code, refused.json()["error"]) == (403, "wrong or missing secret")
    assert site.events() == []


def test_the_relay_refuses_a_body_over_its_limit_unread(site: Landing) -> None:
    refused = site.post("/bangi/postback", json={"padding": "x" * MAX_BODY})
    assert refused.status_code == 413
    assert site.events() == []


@pytest.mark.logs_errors
def test_a_rewriting_failure_serves_the_page_unmodified_with_the_cookie(
    site: Landing, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, page: bytes, click_id: str) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr(PageCache, "rewrite", broken)
    with caplog.at_level(logging.ERROR, logger="bangi_landing"):
        page = site.get("/")
    assert page.status_code == 200
    assert CSRF.findall(page.text) and not SUB1.findall(page.text)
    assert site.browser.cookies.get("bangi_journey")  # the click was reported: keep the journey
    assert "rewriting failed" in caplog.text


@pytest.mark.logs_errors
def test_a_request_side_failure_passes_the_request_through(
    site: Landing, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, environ: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(JourneyCookie, "load", broken)
    with caplog.at_level(logging.ERROR, logger="bangi_landing"):
        page = site.get("/placed/")
    assert page.status_code == 200
    assert '<p id="click"></p>' in page.text
    assert "could not read the request" in caplog.text


# In-process, under ASGI: the middleware in async mode


def run_async(client: AsyncClient, *requests: tuple[str, str, dict[str, Any]]) -> list[Any]:
    """The responses to ``(method, path, kwargs)`` requests, in order, on one client."""

    async def send() -> list[Any]:
        return [await getattr(client, method)(path, **kw) for method, path, kw in requests]

    return asyncio.run(send())


def test_async_a_new_visitor_gets_the_click_the_cookie_and_the_field(tracker_env: Tracker) -> None:
    client = AsyncClient()
    [page] = run_async(client, ("get", "/", {"data": AD}))
    handler: AsyncClientHandler = client.handler
    assert middleware_of(handler).async_mode
    cookie = page.cookies["bangi_journey"]
    assert (cookie["httponly"], cookie["samesite"]) == (True, "Lax")
    [click_id] = SUB1.findall(page.content.decode())
    assert page.asgi_request.bangi_click_id == click_id
    flush(handler)
    [click] = tracker_env.events()
    assert click["clickId"] == click_id
    assert AD.items() <= click["params"].items()


def test_async_an_order_reports_the_lead(tracker_env: Tracker) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    [page] = run_async(client, ("get", "/", {}))
    html = page.content.decode()
    [token], [click_id] = CSRF.findall(html), SUB1.findall(html)
    form = {"csrfmiddlewaretoken": token, "sub1": click_id, "offer": "aurora-ring", **CUSTOMER}
    [thanks] = run_async(client, ("post", "/order/", {"data": form, "follow": True}))
    assert "Thank you, Ana" in thanks.content.decode()
    flush(client.handler)
    [lead] = tracker_env.events(type="lead")
    assert (lead["clickId"], fields(lead)) == (
        click_id,
        {"offer": "aurora-ring", "withheldFields": ["name", "phone"]},
    )


def test_async_a_streamed_page_is_rewritten(tracker_env: Tracker) -> None:
    client = AsyncClient()

    async def body() -> str:
        response = await client.get("/stream/async/")
        assert response.is_async
        return b"".join([chunk async for chunk in response.streaming_content]).decode()

    page = asyncio.run(body())
    [click_id, _] = SUB1.findall(page)
    assert (
        f'<form id="second" action="/search"><input type="hidden" name="sub1" value="{click_id}" />'
        in page
    )


def test_async_the_relay_answers(tracker_env: Tracker) -> None:
    client = AsyncClient()
    click_id = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
    query = {"secret": RELAY_SECRET, "clickId": click_id, "status": "hold"}
    [relayed] = run_async(client, ("get", "/bangi/postback", {"data": query}))
    assert relayed.status_code == 202
    flush(client.handler)
    [postback] = tracker_env.events(type="postback")
    assert (postback["clickId"], postback["params"]["status"]) == (click_id, "expect")


# Settings and the system check


def test_settings_are_read_and_the_secret_key_falls_back_to_djangos(tracker_env: Tracker) -> None:
    middleware = middleware_of(get_wsgi_application())  # which builds the middleware
    assert middleware.destinations[0].url == tracker_env.url + "/"  # from the environment
    assert middleware.campaign_id == 42
    assert middleware.submit_paths == {"/order/", "/api/order/"}
    assert middleware.relay_path == "/bangi/postback"
    with override_settings(SECRET_KEY="short"), pytest.raises(ConfigurationError, match="secret"):
        get_wsgi_application()


def test_the_recommended_order_passes_the_check() -> None:
    assert check_middleware_order() == []


@pytest.mark.parametrize(
    ("below", "check_id"), [(GZIP, "bangi_landing.W001"), (CONDITIONAL_GET, "bangi_landing.W002")]
)
def test_middleware_below_ours_that_must_be_above_is_warned_about(
    below: str, check_id: str
) -> None:
    order = [path for path in settings.MIDDLEWARE if path != below] + [below]
    with override_settings(MIDDLEWARE=order):
        [warning] = check_middleware_order()
    assert warning.id == check_id
    assert warning.hint == f"Move {OURS} below {below}."


def test_the_check_runs_with_djangos_checks() -> None:
    order = [OURS, *(path for path in settings.MIDDLEWARE if path != OURS)]
    with override_settings(MIDDLEWARE=order):
        found = {message.id for message in run_checks()}
    assert {"bangi_landing.W001", "bangi_landing.W002"} <= found


def test_no_middleware_no_warning() -> None:
    # The app alone is fine: its template tags work with the WSGI class in wsgi.py.
    with override_settings(MIDDLEWARE=[GZIP]):
        assert check_middleware_order() == []


# The template tags without a server


def test_hidden_field_escapes_the_field_name() -> None:
    request = RequestFactory().get("/")
    request.META[ENVIRON_KEY] = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
    with override_settings(BANGI_FIELD_NAME='x"><script>'):
        field = Template("{% load bangi %}{% bangi_hidden_field %}").render(
            Context({"request": request})
        )
    assert "<script>" not in field
    assert 'name="x&quot;&gt;&lt;script&gt;"' in field


def test_tags_render_nothing_without_a_request() -> None:
    rendered = Template("{% load bangi %}[{% bangi_click_id %}][{% bangi_hidden_field %}]")
    assert rendered.render(Context({})) == "[][]"


def test_a_view_reads_the_split_tests_variant_at_request_bangi_variant() -> None:
    seen: list[str | None] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.bangi_variant)  # type: ignore[attr-defined]
        return HttpResponse("<p>ring</p>")

    recorder = Recorder()
    with override_settings(BANGI_VARIANTS="a:1, b:1000000"):
        split = BangiLandingMiddleware(view, sender=recorder)
    split(RequestFactory().get("/", HTTP_USER_AGENT=BROWSER))
    split(RequestFactory().get("/", HTTP_USER_AGENT=BOT))  # a crawler: the first variant
    BangiLandingMiddleware(view, sender=Recorder())(
        RequestFactory().get("/", HTTP_USER_AGENT=BROWSER)
    )
    assert seen == ["b", "a", None]
    [click] = recorder.events
    assert click.params["lander"] == "b"
