"""The middleware end to end: a landing app behind BangiLanding, the bundled tracker over HTTP."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.test import Client

from bangi_landing import BangiLanding, ConfigurationError
from bangi_landing.core.journey import JourneyCookie, _JourneySigner
from bangi_landing.sender import BackgroundSender

from .conftest import SECRET, Landing, Tracker, serve_landing, wrap
from .landing import landing_app
from .utils import form_click_ids, live_server, silent_tracker

# The click


def test_first_visit_reports_the_click_with_query_parameters(landing: Landing) -> None:
    response = landing.get("/?source=facebook&ad_name=video-01&campaignId=999")
    assert response.status_code == 200
    [click] = landing.events()
    assert click["type"] == "click"
    assert click["campaignId"] == 42  # the middleware's value wins over the query's
    params = click["params"]
    assert params["source"] == "facebook"
    assert params["ad_name"] == "video-01"
    assert params["landingPath"] == "/"
    assert re.fullmatch(r"[0-9a-f]{32}", params["eventId"])


def test_first_visit_sets_a_signed_http_only_lax_cookie(landing: Landing) -> None:
    response = landing.get()
    header = response.headers["Set-Cookie"]
    assert header.startswith("bangi_journey=")
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Max-Age=2592000" in header
    assert "Secure" not in header  # plain http
    [click] = landing.events()
    assert (
        JourneyCookie(SECRET).load({"HTTP_COOKIE": f"bangi_journey={landing.cookie}"}).click_id
        == (click["clickId"])
    )


def test_every_real_form_carries_the_click_id(landing: Landing) -> None:
    html = landing.get().text
    [click] = landing.events()
    assert form_click_ids(html) == [click["clickId"], click["clickId"]]  # order and search
    assert '<!-- <form id="commented"> -->' in html
    assert '<textarea><form id="in-textarea"></textarea>' in html
    assert f"clickId seen by the app: {click['clickId']}" in html


def test_second_visit_makes_no_second_click(landing: Landing) -> None:
    first = form_click_ids(landing.get().text)
    second = landing.get("/?source=again")
    assert "Set-Cookie" not in second.headers
    assert form_click_ids(second.text) == first
    assert len(landing.events()) == 1


def test_click_id_from_the_url_continues_the_journey(landing: Landing) -> None:
    click_id = str(uuid.uuid4())
    response = landing.get(f"/?clickId={click_id.upper()}")
    assert form_click_ids(response.text) == [click_id, click_id]
    assert landing.events() == []  # a journey in progress: no new click
    assert landing.cookie is not None
    assert form_click_ids(landing.get().text) == [click_id, click_id]  # now from the cookie


def test_invalid_click_id_in_the_url_starts_a_new_journey(landing: Landing) -> None:
    response = landing.get('/?clickId="><script>alert(1)</script>')
    assert "<script>alert(1)" not in response.text
    [click] = landing.events()
    assert click["clickId"] != "<script>"
    assert "clickId" not in click["params"]


def signed(click_id: str, *, secret: str = SECRET, age: int = 0) -> str:
    """A journey cookie value as the middleware makes it, ``age`` seconds old."""

    class Aged(_JourneySigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - age

    return Aged(secret, JourneyCookie.SALT).sign(click_id).decode()


def test_valid_cookie_continues_the_journey(landing: Landing) -> None:
    click_id = str(uuid.uuid4())
    landing.browser.cookies.set("bangi_journey", signed(click_id, age=29 * 24 * 3600))
    assert form_click_ids(landing.get().text) == [click_id, click_id]
    assert landing.events() == []


def test_forged_cookie_is_ignored(landing: Landing) -> None:
    click_id = str(uuid.uuid4())
    landing.browser.cookies.set("bangi_journey", signed(click_id, secret="another-secret-123456"))
    landing.get()
    [click] = landing.events()
    assert click["clickId"] != click_id


def test_tampered_cookie_is_ignored(landing: Landing) -> None:
    click_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    landing.browser.cookies.set("bangi_journey", signed(click_id).replace(click_id, other))
    landing.get()
    [click] = landing.events()
    assert click["clickId"] not in (click_id, other)


def test_expired_cookie_is_ignored(landing: Landing) -> None:
    click_id = str(uuid.uuid4())
    landing.browser.cookies.set("bangi_journey", signed(click_id, age=31 * 24 * 3600))
    landing.get()
    [click] = landing.events()
    assert click["clickId"] != click_id


@pytest.mark.parametrize("cookie", ["x" * 5000, "garbage", "a.b.c", '"quoted"', ""])
def test_malformed_cookie_starts_a_new_journey(landing: Landing, cookie: str) -> None:
    response = landing.browser.get(
        landing.url + "/", headers={"Cookie": f"bangi_journey={cookie}"}, timeout=5
    )
    assert response.status_code == 200
    assert len(landing.events()) == 1


def test_another_cookie_in_latin_1_does_not_end_the_journey(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get().text)
    # requests sends header text as latin-1: "été" goes as the bytes E9 74 E9, not UTF-8.
    cookie = f"theme=été; bangi_journey={landing.cookie}; lang=ñ"
    page = requests.get(landing.url + "/", headers={"Cookie": cookie}, timeout=5)
    assert form_click_ids(page.text) == [click_id, click_id]
    assert len(landing.events(type="click")) == 1


@pytest.mark.parametrize("path", ["/style.css", "/api", "/redirect", "/missing", "/download"])
def test_no_click_for_what_is_not_a_landing_page_view(landing: Landing, path: str) -> None:
    response = landing.get(path, allow_redirects=False)
    assert "Set-Cookie" not in response.headers
    assert landing.events() == []


def test_no_click_for_head(landing: Landing) -> None:
    response = landing.browser.head(landing.url + "/", timeout=5)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert landing.events() == []


def test_app_sees_the_click_id(landing: Landing) -> None:
    html = landing.get().text
    [click_id, _] = form_click_ids(html)
    assert f"clickId seen by the app: {click_id}" in html


# Rewriting and caching


def test_rewritten_page_is_private_and_varies_on_cookie(landing: Landing) -> None:
    response = landing.get("/cached")
    assert "Content-Length" not in response.headers or int(
        response.headers["Content-Length"]
    ) == len(response.content)
    cache_control = {part.strip() for part in response.headers["Cache-Control"].split(",")}
    assert "private" in cache_control
    assert "public" not in cache_control
    assert not any(part.startswith("s-maxage") for part in cache_control)
    assert "max-age=600" in cache_control
    assert response.headers["Vary"] == "Accept-Encoding, Cookie"
    assert response.headers["ETag"] == 'W/"abc"'
    assert form_click_ids(response.text)


def test_repeated_cache_headers_are_combined(landing: Landing) -> None:
    response = landing.get("/repeated")
    assert response.headers["Cache-Control"] == "max-age=60, private"
    assert response.headers["Vary"] == "Accept-Encoding, Accept-Language, Cookie"


def test_compressed_html_is_a_page_view_but_is_not_touched(landing: Landing) -> None:
    response = landing.get("/gzip")
    assert response.headers["Content-Encoding"] == "gzip"
    assert form_click_ids(response.text) == []  # requests decompressed the original
    assert landing.cookie is not None
    assert [event["type"] for event in landing.events()] == ["click"]


def test_utf16_html_is_not_touched(landing: Landing) -> None:
    landing.get()
    response = landing.get("/utf16")
    assert form_click_ids(response.content.decode("utf-16")) == []


def test_page_that_renders_the_field_itself_gets_no_second_one(landing: Landing) -> None:
    landing.get()
    html = landing.get("/helper").text
    assert html.count('name="sub1"') == 1


def test_error_pages_of_a_journey_still_get_the_field(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get().text)
    assert form_click_ids(landing.get("/missing").text) == [click_id]


def test_links_to_listed_hosts_carry_the_click_id(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get().text)
    html = landing.get("/links").text
    assert f'href="https://shop.example/buy?x=1&amp;clickId={click_id}"' in html
    assert 'href="https://other.example/"' in html


# The lead


def test_submit_reaches_the_app_unchanged_and_reports_the_lead(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get("/?source=fb").text)
    form = {
        "sub1": click_id,
        "name": "Ana Lima",
        "phone": "+55 11 99999-0000",
        "email": "ana@example.com",
        "csrf_token": "secret-token",
        "password": "hunter2",
        "offer_id": "456",
        "quantity": "2",
    }
    response = landing.post(data=form)
    assert response.status_code == 200
    assert (
        response.content == requests.Request("POST", "http://x/", data=form).prepare().body.encode()
    )  # type: ignore[union-attr]
    [lead] = landing.events(type="lead")
    assert lead["clickId"] == click_id
    assert lead["campaignId"] == 42
    assert {k: v for k, v in lead["params"].items() if k != "eventId"} == {
        "offer_id": "456",
        "quantity": "2",
        "withheldFields": ["name", "phone", "email"],  # names only; secrets go unmentioned
    }


def test_multipart_submit_reaches_the_app_unchanged(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get().text)
    response = landing.post(
        data={"sub1": click_id, "offer_id": "7"}, files={"photo": ("a.txt", b"file body")}
    )
    assert b"file body" in response.content
    assert int(response.headers["X-Received-Length"]) == len(response.content)
    [lead] = landing.events(type="lead")
    assert lead["params"]["offer_id"] == "7"
    assert "photo" not in lead["params"]


def test_json_submit_reports_the_lead(landing: Landing) -> None:
    click_id = str(uuid.uuid4())
    response = landing.post(json={"sub1": click_id, "offer_id": 9, "phone": "123"})
    assert response.json() == {"sub1": click_id, "offer_id": 9, "phone": "123"}
    [lead] = landing.events(type="lead")
    assert lead["clickId"] == click_id
    assert lead["params"]["offer_id"] == 9
    assert "phone" not in lead["params"]


def test_owner_listed_fields_are_sent_exactly(tracker: Tracker) -> None:
    middleware = wrap(tracker, lead_fields=["phone", "offer_id"], submit_paths=["/submit"])
    with live_server(middleware) as url:
        requests.post(
            f"{url}/submit", data={"phone": "123", "offer_id": "1", "utm": "x"}, timeout=5
        ).raise_for_status()
        assert isinstance(middleware.sender, BackgroundSender)
        middleware.sender.flush(10)
    [lead] = tracker.events(type="lead")
    assert {k: v for k, v in lead["params"].items() if k != "eventId"} == {
        "phone": "123",
        "offer_id": "1",
    }


def test_rejected_submit_reports_no_lead(landing: Landing) -> None:
    landing.get()
    assert landing.post(data={"fail": "1"}).status_code == 400
    assert landing.events(type="lead") == []


def test_submit_without_click_id_reports_a_lead_with_a_fresh_one(tracker: Tracker) -> None:
    with serve_landing(tracker, submit_paths=["/submit"]) as landing:
        response = landing.post(data={"offer_id": "1"})
        assert response.status_code == 200
        [lead] = landing.events()
        cookie = landing.cookie
    assert lead["type"] == "lead"
    assert lead["campaignId"] is None  # no click was ever recorded for it
    assert (
        JourneyCookie(SECRET).load({"HTTP_COOKIE": f"bangi_journey={cookie}"}).click_id
        == (lead["clickId"])
    )


def test_submit_uses_the_cookie_when_the_form_has_no_field(tracker: Tracker) -> None:
    with serve_landing(tracker, submit_paths=["/submit"]) as landing:
        [click_id, _] = form_click_ids(landing.get().text)
        landing.post(data={"offer_id": "1"})
        [lead] = landing.events(type="lead")
    assert lead["clickId"] == click_id


def test_oversized_submit_passes_through_and_still_reports_the_lead(tracker: Tracker) -> None:
    middleware = wrap(tracker, max_submit_size=100, submit_paths=["/submit"])
    body = {"offer_id": "1", "pad": "x" * 500}
    with live_server(middleware) as url:
        response = requests.post(f"{url}/submit", data=body, timeout=5)
        assert isinstance(middleware.sender, BackgroundSender)
        middleware.sender.flush(10)
    assert len(response.content) > 500
    [lead] = tracker.events(type="lead")
    assert set(lead["params"]) == {"eventId"}


def test_a_post_carrying_the_field_is_the_lead_wherever_it_posts(landing: Landing) -> None:
    [click_id, _] = form_click_ids(landing.get().text)
    response = landing.post("/order", data={"sub1": click_id, "offer_id": "1"})
    assert response.status_code == 200
    [lead] = landing.events(type="lead")
    assert (lead["clickId"], lead["params"]["offer_id"]) == (click_id, "1")


def test_a_post_whose_field_holds_no_click_id_is_no_lead(landing: Landing) -> None:
    landing.get()
    landing.post("/order", data={"sub1": "not-a-click-id", "offer_id": "1"})
    landing.post("/order", json={"sub1": ["a", "list"], "offer_id": "1"})
    assert landing.events(type="lead") == []


@pytest.mark.parametrize(
    ("content_type", "size"),
    [("text/plain", 0), ("application/octet-stream", 0), ("application/x-www-form-urlencoded", 1)],
)
def test_a_body_that_is_not_read_reaches_the_app_untouched_and_is_no_lead(
    tracker: Tracker, content_type: str, size: int
) -> None:
    with serve_landing(tracker, max_submit_size=100) as landing:
        [click_id, _] = form_click_ids(landing.get().text)
        body = f"sub1={click_id}&offer_id=1".encode() + b"&pad=" + b"x" * 200 * size
        response = landing.post(data=body, headers={"Content-Type": content_type})
        assert response.content == body
        assert landing.events(type="lead") == []


def test_with_submit_paths_a_post_carrying_the_field_elsewhere_warns_once_per_path(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_landing(tracker, submit_paths=["/submit"]) as landing:
        [click_id, _] = form_click_ids(landing.get().text)
        for path in ("/order", "/order", "/checkout"):
            landing.post(path, data={"sub1": click_id, "offer_id": "1"})
        assert landing.events(type="lead") == []
    warnings = [r.getMessage() for r in caplog.records if "submit_paths" in r.getMessage()]
    assert len(warnings) == 2
    assert "POST to /order" in warnings[0] and "BANGI_SUBMIT_PATHS" in warnings[0]


def test_post_elsewhere_is_no_lead(landing: Landing) -> None:
    landing.get()
    landing.post("/other", data={"offer_id": "1"})
    assert landing.events(type="lead") == []


# Durability


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
@pytest.mark.parametrize("durable_clicks", [False, True])
def test_a_lead_is_in_the_outbox_before_the_submit_response(
    tracker: Tracker,
    tmp_path: Path,
    durable_clicks: bool,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    outbox: str | Path = tmp_path / "box.sqlite3"
    if store == "postgresql":  # committed: another connection sees it
        postgres = request.getfixturevalue("postgres")
        postgres.empty()
        outbox = postgres.url
    middleware = wrap(
        tracker,
        outbox=outbox,
        durable_clicks=durable_clicks,
        submit_paths=["/submit"],
    )
    sender = middleware.sender
    assert isinstance(sender, BackgroundSender) and sender.outbox is not None
    sender._ensure_threads = lambda: None  # type: ignore[method-assign]  # no writer behind
    client = Client(middleware)
    client.get("/")  # a click: queued, or written at once when asked
    assert sender.outbox.depth() == (1 if durable_clicks else 0)
    client.post("/submit", data={"offer": "1"})
    assert sender.outbox.depth() == (2 if durable_clicks else 1)


def test_outbox_none_keeps_events_in_memory(tracker: Tracker) -> None:
    middleware = wrap(tracker, outbox=None)
    assert isinstance(middleware.sender, BackgroundSender)
    assert middleware.sender.outbox is None


def test_an_unusable_outbox_is_named_at_start(tracker: Tracker, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigurationError, match=r"outbox \(BANGI_OUTBOX\) .*file/box"):
        wrap(tracker, outbox=tmp_path / "file" / "box.sqlite3")


# Never in the way


def test_dead_tracker_costs_the_page_nothing(tracker: Tracker) -> None:
    with silent_tracker() as tracker_url:
        middleware = BangiLanding(
            landing_app, tracker_url=tracker_url, campaign_id=1, secret_key=SECRET
        )
        with live_server(middleware) as url, requests.Session() as browser:
            for _ in range(5):  # each would wait 10 s if reporting were in the request
                assert browser.get(url + "/", timeout=2).status_code == 200
                browser.cookies.clear()


@pytest.mark.logs_errors
def test_rewriter_failure_serves_the_page_unmodified(
    landing: Landing, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, chunk: bytes) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr("bangi_landing.core.landing.HtmlRewriter.feed", broken)
    with caplog.at_level(logging.ERROR, logger="bangi_landing"):
        response = landing.get()
    assert response.status_code == 200
    assert '<form id="order" action="/submit" method="post">' in response.text
    assert "rewriting failed" in caplog.text


@pytest.mark.logs_errors
def test_request_side_failure_passes_the_request_through(
    landing: Landing, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, environ: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(JourneyCookie, "load", broken)
    with caplog.at_level(logging.ERROR, logger="bangi_landing"):
        response = landing.get()
    assert response.status_code == 200
    assert "could not read the request" in caplog.text


@pytest.mark.parametrize(
    "query", ["%ff%fe=%00", "a=%zz", "clickId=%E2%80%8F" + "1" * 36, "&&&=&", "x=" + "y" * 8000]
)
def test_odd_query_strings_are_harmless(landing: Landing, query: str) -> None:
    assert landing.get(f"/?{query}").status_code == 200


# Configuration


def test_settings_fall_back_to_the_environment(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANGI_TRACKER_URL", tracker.url)
    monkeypatch.setenv("BANGI_CAMPAIGN_ID", "7")
    monkeypatch.setenv("BANGI_SECRET_KEY", SECRET)
    middleware = BangiLanding(landing_app)
    assert (middleware.destinations[0].url, middleware.campaign_id) == (tracker.url + "/", 7)


def test_list_settings_from_the_environment_are_comma_separated(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANGI_SUBMIT_PATHS", "/order")
    monkeypatch.setenv("BANGI_LINK_HOSTS", "shop.example, www.shop.example")
    monkeypatch.setenv("BANGI_MAX_SUBMIT_SIZE", "1000")
    monkeypatch.setenv("BANGI_IGNORE_PREFETCH", "no")
    middleware = wrap(tracker)
    assert middleware.submit_paths == {"/order"}
    assert middleware.link_hosts == ("shop.example", "www.shop.example")
    assert middleware.max_submit_size == 1000
    assert not middleware.visitors.prefetch


@pytest.mark.parametrize("option", ["submit_paths", "lead_fields", "link_hosts", "bot_agents"])
def test_a_string_for_a_list_option_is_a_type_error(tracker: Tracker, option: str) -> None:
    with pytest.raises(TypeError, match=f"{option} must be a list of strings"):
        wrap(tracker, **{option: "/order"})


@pytest.mark.parametrize(
    ("name", "text"),
    [("BANGI_MAX_SUBMIT_SIZE", "64k"), ("BANGI_DURABLE_CLICKS", "maybe")],
)
def test_an_environment_setting_that_does_not_parse_is_named(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigurationError, match=name):
        wrap(tracker)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"tracker_url": None}, "BANGI_TRACKER_URL"),
        ({"tracker_url": "dashboard.example.com"}, "tracker_url"),
        ({"tracker_url": "ftp://x"}, "tracker_url"),
        ({"campaign_id": None}, "BANGI_CAMPAIGN_ID"),
        ({"campaign_id": "abc"}, "campaign_id"),
        ({"campaign_id": 0}, "campaign_id"),
        ({"secret_key": None}, "BANGI_SECRET_KEY"),
        ({"secret_key": "short"}, "secret_key"),
    ],
)
def test_missing_or_invalid_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], named: str
) -> None:
    for env in ("BANGI_TRACKER_URL", "BANGI_CAMPAIGN_ID", "BANGI_SECRET_KEY"):
        monkeypatch.delenv(env, raising=False)
    settings = {
        "tracker_url": "https://t.example",
        "campaign_id": 1,
        "secret_key": SECRET,
        **options,
    }
    with pytest.raises(ConfigurationError, match=named):
        BangiLanding(landing_app, **settings)
