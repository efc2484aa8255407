"""Split tests: variants drawn by weight per new journey, kept by the journey cookie, read by
the app on every door, carried by the click and the lead, compared in the tracker's report.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask import Flask, render_template_string

from bangi_landing import BangiLanding, ConfigurationError
from bangi_landing.asgi import BangiLandingASGI
from bangi_landing.core import VARIANT_KEY, Journey
from bangi_landing.core.journey import JourneyCookie
from bangi_landing.flask import Bangi
from bangi_landing.tracker.report import probability_best

from .conftest import SECRET, Landing, Tracker, new_click
from .test_tracker_report import lead, postback, put_campaign
from .utils import SUB1, Recorder, Sink, live_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

WEIGHTS = {"a": 50, "b": 30, "c": 20}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
VARIANT = re.compile(r'<p id="variant">([^<]*)</p>')


def variant_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A landing that renders the variant it is given, with an order form; a POST is a lead."""
    if environ["REQUEST_METHOD"] == "POST":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"thanks"]
    page = (
        f'<!doctype html><p id="variant">{environ.get(VARIANT_KEY, "")}</p>'
        '<form action="/submit" method="post"><input name="phone"></form>'
    )
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


def core(**options: Any) -> BangiLanding:
    """A landing whose events are recorded in-process."""
    return BangiLanding(variant_app, secret_key=SECRET, sender=Recorder(), **options)


def visit(landing: BangiLanding, query: str = "", cookie: str = "", **meta: str) -> Journey | None:
    """The core's journey for a GET of ``/?query`` (``cookie``: a Set-Cookie header)."""
    request = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": query,
        "HTTP_USER_AGENT": BROWSER,
        "HTTP_COOKIE": cookie.split(";", 1)[0],
        **meta,
    }
    journey = landing.journey(request, lambda _: None)
    if journey is not None:
        assert request[VARIANT_KEY] == journey.variant  # what the app reads
    return journey


def new_journey(landing: BangiLanding, query: str = "") -> tuple[Journey, str]:
    """A new visitor's journey and the Set-Cookie header that keeps it."""
    journey = visit(landing, query)
    assert journey is not None and journey.source == "new"
    return journey, landing.cookie_header(journey, secure=False)


# The draw and the cookie, through the core's journey step


def test_ten_thousand_new_journeys_split_by_weight() -> None:
    landing = core(variants=WEIGHTS)
    drawn = Counter(new_journey(landing)[0].variant for _ in range(10_000))
    total = sum(WEIGHTS.values())
    for name, weight in WEIGHTS.items():
        assert abs(drawn[name] / 10_000 - weight / total) < 0.02, drawn


def test_a_returning_visitor_keeps_their_variant_over_twenty_visits() -> None:
    landing = core(variants=WEIGHTS)
    for _ in range(10):  # ten visitors, whatever each drew
        first, cookie = new_journey(landing)
        for _ in range(20):
            again = visit(landing, cookie=cookie)
            assert again is not None and again.source == "cookie"
            assert (again.click_id, again.variant) == (first.click_id, first.variant)
            assert not again.save  # nothing new to keep: no Set-Cookie


def test_a_weight_change_moves_only_new_journeys() -> None:
    before = core(variants={"a": 50, "b": 50})
    kept = [new_journey(before) for _ in range(200)]
    assert {journey.variant for journey, _ in kept} == {"a", "b"}
    after = core(variants={"a": 1, "b": 99})  # restarted with new weights, the same key
    for journey, cookie in kept:
        again = visit(after, cookie=cookie)
        assert again is not None and again.variant == journey.variant
    drawn = Counter(new_journey(after)[0].variant for _ in range(1000))
    assert drawn["b"] > 950, drawn


def test_a_journey_whose_variant_was_removed_gets_a_new_draw() -> None:
    journey, cookie = new_journey(core(variants={"old": 1}))
    again = visit(core(variants={"a": 1, "b": 1}), cookie=cookie)
    assert again is not None and again.click_id == journey.click_id
    assert again.variant in ("a", "b") and again.save  # the cookie gets the new one


def test_the_url_names_a_new_journeys_variant() -> None:
    landing = core(variants={"a": 1_000_000, "b": 1})
    journey, cookie = new_journey(landing, "variant=b&utm_source=fb")
    assert journey.variant == "b"
    again = visit(landing, cookie=cookie)
    assert again is not None and again.variant == "b"
    # A journey under way keeps its variant: its click already carried it.
    again = visit(landing, "variant=a", cookie=cookie)
    assert again is not None and again.variant == "b"


def test_the_variant_parameter_name_is_configurable() -> None:
    landing = core(variants={"a": 1_000_000, "b": 1}, variant_param="v")
    assert new_journey(landing, "v=b")[0].variant == "b"
    assert new_journey(landing, "variant=b")[0].variant == "a"


@pytest.mark.parametrize("query", ["variant=zzz", "variant=", "variant=B", "variant=%FF"])
def test_a_url_naming_an_unknown_variant_is_ignored(query: str) -> None:
    landing = core(variants={"a": 1_000_000, "b": 1})
    assert new_journey(landing, query)[0].variant == "a"


def test_a_forged_cookie_carries_no_variant() -> None:
    landing = core(variants={"a": 1_000_000, "b": 1})
    forger = JourneyCookie("another-secret-0123456789")
    forged = forger.header(CLICK_ID, secure=False, variant="b")
    again = visit(landing, cookie=forged)
    assert again is not None and again.source == "new"
    assert again.click_id != CLICK_ID and again.variant == "a"


def test_the_variant_is_part_of_the_signed_value() -> None:
    landing = core(variants={"a": 1, "b": 1})
    journey, cookie = new_journey(landing)
    value = cookie.split(";", 1)[0]
    other = "b" if journey.variant == "a" else "a"
    tampered = value.replace(f"~~{journey.variant}.", f"~~{other}.")
    assert tampered != value
    again = visit(landing, cookie=tampered)
    assert again is not None and again.source == "new"


def test_a_cookie_from_before_the_split_test_gets_a_variant() -> None:
    cookie = JourneyCookie(SECRET).header(CLICK_ID, secure=False)
    again = visit(core(variants={"a": 1}), cookie=cookie)
    assert again is not None and again.source == "cookie"
    assert again.variant == "a" and again.save


def test_without_variants_nothing_is_added() -> None:
    landing = core()
    request = {"REQUEST_METHOD": "GET", "QUERY_STRING": "variant=b", "HTTP_USER_AGENT": BROWSER}
    journey = landing.journey(request, lambda _: None)
    assert journey is not None and journey.variant is None
    assert VARIANT_KEY not in request
    assert journey.cookie is not None and "~" not in journey.cookie  # the clickId alone


def test_probability_best_is_a_seeded_beta_posterior() -> None:
    assert probability_best([(1000, 100), (1000, 100)]) == probability_best(
        [(1000, 100), (1000, 100)]
    )
    even = probability_best([(1000, 100), (1000, 100)])
    assert abs(even[0] - 0.5) < 0.03 and abs(sum(even) - 1) < 1e-9
    clear = probability_best([(1000, 50), (1000, 150)])
    assert clear[1] > 0.999
    close = probability_best([(200, 20), (200, 26)])
    assert 0.75 < close[1] < 0.95  # a hint, not a verdict: the page says how sure


# Bad settings fail at start-up, naming the option


@pytest.mark.parametrize(
    "variants",
    [
        {"a": 0},
        {"a": -5},
        {"a": "50"},
        {"a": True},
        {"a": float("nan")},
        {"a": float("inf")},
        {"": 1},
        {"a b": 1},
        {"a/b": 1},
        {"a~b": 1},
        {"é": 1},
        {"x" * 33: 1},
        ["a", "b"],
    ],
)
def test_bad_variants_fail_at_start_up(variants: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"variants \(BANGI_VARIANTS\)"):
        core(variants=variants)


@pytest.mark.parametrize("text", ["a:x", "a50", "a:0", ":50", "a:50,b:-1", '{"a": "x"}', "[1]"])
def test_bad_variants_from_the_environment_fail_at_start_up(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANGI_VARIANTS", text)
    with pytest.raises(ConfigurationError, match="BANGI_VARIANTS"):
        core()


def test_variants_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANGI_VARIANTS", "a:50, b:30,c:20")
    monkeypatch.setenv("BANGI_LANDER_PARAM", "lp")
    landing = core()
    assert landing.variants is not None and landing.variants.weights == WEIGHTS
    assert landing.lander_param == "lp"


# Over HTTP: the app, the cookie, the click and the lead, the bundled tracker's report


@pytest.fixture
def split(tracker: Tracker) -> Iterator[Landing]:
    middleware = BangiLanding(
        variant_app, tracker_url=tracker.url, campaign_id=7, secret_key=SECRET, variants=WEIGHTS
    )
    with live_server(middleware) as url, requests.Session() as browser:
        yield Landing(url, middleware, tracker, browser)


def shown_variant(response: requests.Response) -> str:
    [variant] = VARIANT.findall(response.text)
    return variant


def report_table(tracker: Tracker, campaign_id: int) -> dict[str, dict[str, str]]:
    """The report's variant table of a campaign: variant -> metric -> cell text."""
    html = tracker.http.get(tracker.url + "/", timeout=5).text
    [table] = re.findall(rf'<table class="variant-table" id="variants-{campaign_id}">.*?</table>',
                         html, re.S)  # fmt: skip
    rows = re.findall(r'<tr data-variant="([^"]*)">(.*?)</tr>', table, re.S)
    return {
        name: dict(re.findall(r'<td[^>]*data-metric="([^"]+)">(.*?)</td>', cells, re.S))
        for name, cells in rows
    }


def test_click_and_lead_carry_the_journeys_variant_and_the_report_counts_them(
    split: Landing, tracker: Tracker
) -> None:
    put_campaign(tracker, 7)  # maps status=approved to accept, 10 USD a lead
    shown: dict[str, str] = {}
    for visitor in range(40):
        split.browser.cookies.clear()
        page = split.get("/?utm_source=fb")
        variant = shown_variant(page)
        [click_id] = SUB1.findall(page.text)
        shown[click_id] = variant
        assert shown_variant(split.get("/")) == variant  # the same on every page
        if visitor % 2:
            assert split.post(data={"sub1": click_id, "phone": "555"}).status_code == 200
            if visitor % 4 == 1:
                postback(tracker, click_id, "approved")
    assert set(shown.values()) == set(WEIGHTS)  # 40 draws at 50/30/20 miss one 1 in 10^4
    events = split.events()
    for event in events:
        if event["type"] in ("click", "lead"):
            assert event["params"]["lander"] == shown[event["clickId"]], event
    table = report_table(tracker, 7)
    clicks = Counter(shown[e["clickId"]] for e in events if e["type"] == "click")
    leads = Counter(shown[e["clickId"]] for e in events if e["type"] == "lead")
    accepted = Counter(
        shown[e["clickId"]] for e in events if e["type"] == "postback" and e["status"] == "accept"
    )
    assert sum(clicks.values()) == 40 and sum(leads.values()) == 20
    for name, row in table.items():
        assert int(row["clicks"]) == clicks[name]
        assert int(row["leads"]) == leads[name]
        assert int(row["accepted"]) == accepted[name]
        assert f"{10 * accepted[name]:,.2f} USD" in row["payout"]
    assert set(table) == set(clicks)
    assert sum(float(row["best"].rstrip("%")) for row in table.values()) == pytest.approx(100, 0.01)
    assert "Beta(1 + leads, 1 + clicks - leads)" in tracker.http.get(tracker.url, timeout=5).text


def test_crawlers_and_prefetches_see_the_first_variant_and_start_nothing(
    split: Landing,
) -> None:
    for headers in ({"User-Agent": BOT}, {"User-Agent": BROWSER, "Sec-Purpose": "prefetch"}):
        page = split.get("/", headers=headers)
        assert shown_variant(page) == "a"
        assert "Set-Cookie" not in page.headers and not SUB1.findall(page.text)
    assert shown_variant(split.get("/?variant=c", headers={"User-Agent": BOT})) == "c"
    assert split.events() == []


# Every door gives the app the variant


def test_flask_templates_get_bangi_variant(tracker: Tracker) -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="flask-secret-key-0123456789",
        BANGI_TRACKER_URL=tracker.url,
        BANGI_CAMPAIGN_ID=5,
        BANGI_VARIANTS="only:1",  # text, as from an environment file
        BANGI_LANDER_PARAM="lp",
    )
    app.get("/")(lambda: render_template_string('<p id="variant">{{ bangi_variant() }}</p>'))
    Bangi(app)
    with live_server(app) as url, requests.Session() as browser:
        page = browser.get(url + "/", timeout=5)
        assert shown_variant(page) == "only"
        [click] = Landing(url, app.extensions["bangi_landing"], tracker, browser).events()
    assert click["params"]["lp"] == "only"


def test_the_asgi_scope_gets_the_variant() -> None:
    seen: list[tuple[Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope.get("bangi.variant"), scope.get("state", {}).get("bangi_variant")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def request(agent: bytes) -> None:
        middleware = BangiLandingASGI(
            app, secret_key=SECRET, sender=Recorder(), variants={"a": 1, "b": 1_000_000}
        )
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"user-agent", agent)],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            return None

        await middleware(scope, receive, send)

    asyncio.run(request(BROWSER.encode()))
    asyncio.run(request(BOT.encode()))
    assert seen == [("b", "b"), ("a", "a")]  # drawn; a crawler's is the first


def test_postback_templates_fill_the_variant_macro_on_every_event_of_the_journey() -> None:
    sink = Sink()
    with live_server(sink) as sink_url:
        templates = {
            kind: f"{sink_url}/pb/{kind}?v={{variant}}&s={{status}}"
            for kind in ("click", "lead", "postback")
        }
        middleware = BangiLanding(
            variant_app, secret_key=SECRET, postback_templates=templates, variants={"x": 1}
        )
        assert middleware.journey_params == ()  # the macro is the journey's, not the URL's
        with live_server(middleware) as url, requests.Session() as browser:
            page = browser.get(url + "/?variant=zzz", timeout=5)
            [click_id] = SUB1.findall(page.text)
            browser.post(url + "/submit", data={"sub1": click_id}, timeout=5)
        middleware.report_status(click_id, "accept")  # a CRM hook, days later: no request
        assert middleware.flush(10)
        middleware.close()
    assert sorted((r["path"], r["query"]) for r in sink.received) == [
        ("/pb/click", "v=x&s="),
        ("/pb/lead", "v=x&s="),
        ("/pb/postback", "v=x&s=accept"),
    ]


def test_the_report_compares_the_ten_variants_with_the_most_clicks(tracker: Tracker) -> None:
    for number in range(12):  # any API client can send clicks of made-up variants
        for _ in range(12 - number):
            new_click(tracker, 3, lander=f"v{number:02}")
    new_click(tracker, 3, lander=["v00", "v01"])  # a repeated parameter names no variant
    new_click(tracker, 3, lander="x" * 500)
    table = report_table(tracker, 3)
    assert sorted(table) == [f"v{number:02}" for number in range(10)]
    assert [int(table[f"v{n:02}"]["clicks"]) for n in range(10)] == list(range(12, 2, -1))
    page = tracker.http.get(tracker.url, timeout=5).text
    assert "3 more variants with fewer clicks are not shown." in page


def test_the_report_counts_a_lead_under_its_clicks_variant(tracker: Tracker) -> None:
    click_id = new_click(tracker, 4, lander="a")
    new_click(tracker, 4, lander="b")
    lead(tracker, click_id, lander="b")  # from a page on another domain, say
    table = report_table(tracker, 4)
    assert (table["a"]["clicks"], table["a"]["leads"]) == ("1", "1")
    assert (table["b"]["clicks"], table["b"]["leads"]) == ("1", "0")
