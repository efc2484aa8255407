"""Crawlers, link previews and prefetches make no click and get no cookie; visitors do."""

from __future__ import annotations

import pytest

from bangi_landing.core.visitors import VisitorFilter

from .conftest import Landing

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
NOT_VISITORS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "yandex": "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "telegram": "TelegramBot (like TwitterBot)",
    "whatsapp": "WhatsApp/2.23.20.0",
    "slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "discord": "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "skype": "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "ahrefs": "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
}
VISITORS = {
    "chrome": CHROME,
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "cubot phone": "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36"
    " (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "headless chrome": "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36",
    "no user-agent": "",
}
PREFETCH = {
    "chrome speculation": {"Sec-Purpose": "prefetch"},
    "chrome prerender": {"Sec-Purpose": "prefetch;prerender"},
    "purpose": {"Purpose": "prefetch"},
    "firefox": {"X-Moz": "prefetch"},
    "safari preview": {"X-Purpose": "preview"},
}


@pytest.mark.parametrize("agent", NOT_VISITORS.values(), ids=NOT_VISITORS.keys())
def test_crawlers_and_link_previews_pass_through(landing: Landing, agent: str) -> None:
    response = landing.get("/?source=fb", headers={"User-Agent": agent})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert 'name="sub1"' not in response.text
    assert landing.events() == []


@pytest.mark.parametrize("headers", PREFETCH.values(), ids=PREFETCH.keys())
def test_prefetches_pass_through(landing: Landing, headers: dict[str, str]) -> None:
    response = landing.get("/?source=fb", headers={"User-Agent": CHROME, **headers})
    assert "Set-Cookie" not in response.headers
    assert landing.events() == []


def test_a_crawlers_submit_reports_no_lead(landing: Landing) -> None:
    click_id = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
    agent = {"User-Agent": NOT_VISITORS["googlebot"]}
    response = landing.post(data={"sub1": click_id, "offer": "7"}, headers=agent)
    assert response.ok
    assert "Set-Cookie" not in response.headers
    assert landing.events() == []


def test_a_request_with_a_journey_cookie_continues_the_journey(landing: Landing) -> None:
    landing.get("/?source=fb", headers={"User-Agent": CHROME})
    [click] = landing.events()
    # The visitor's browser prefetches the next page: it carries the cookie.
    response = landing.get("/", headers={"User-Agent": CHROME, "Sec-Purpose": "prefetch"})
    assert f'name="sub1" value="{click["clickId"]}"' in response.text
    assert len(landing.events()) == 1  # no second click


@pytest.mark.parametrize("agent", VISITORS.values(), ids=VISITORS.keys())
def test_visitors_are_counted(landing: Landing, agent: str) -> None:
    response = landing.get("/?source=fb", headers={"User-Agent": agent})
    assert "Set-Cookie" in response.headers
    assert len(landing.events()) == 1


def test_the_lists_are_configurable() -> None:
    environ = {"HTTP_USER_AGENT": "MyMonitor/1.0", "HTTP_SEC_PURPOSE": "prefetch"}
    assert VisitorFilter(["mymonitor"], prefetch=False).ignores(environ)
    assert not VisitorFilter((), prefetch=False).ignores(environ)
    assert VisitorFilter(()).ignores(environ)  # the prefetch
    googlebot = {"HTTP_USER_AGENT": NOT_VISITORS["googlebot"]}
    assert not VisitorFilter((), prefetch=False).ignores(googlebot)


def test_verdicts_are_remembered_within_bounds() -> None:
    visitors = VisitorFilter()
    for n in range(visitors.MAX_AGENTS + 10):  # a User-Agent per request, say a scanner's
        assert not visitors.ignores({"HTTP_USER_AGENT": f"{CHROME} {n}"})
    assert len(visitors._verdicts) <= visitors.MAX_AGENTS
    long_bot = "x" * visitors.MAX_AGENT_LENGTH + " Googlebot/2.1"
    assert visitors.ignores({"HTTP_USER_AGENT": long_bot})  # matched, not remembered
    assert visitors.ignores({"HTTP_USER_AGENT": long_bot})
    assert long_bot not in visitors._verdicts
    assert visitors.ignores({"HTTP_USER_AGENT": NOT_VISITORS["googlebot"]})  # remembered: still
    assert visitors.ignores({"HTTP_USER_AGENT": NOT_VISITORS["googlebot"]})
