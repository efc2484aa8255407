"""AlterCPA Pro, statuses and the postback relay, end to end over real HTTP.

The landing (tests/landing.py behind BangiLanding) reports to the bundled
tracker, which also plays AlterCPA Pro (bangi_landing/tracker/altercpa.py):
every call Pro gets is in the tracker's ``/api/v2/events`` as type ``altercpa``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from bangi_landing import BangiLanding, ConfigurationError
from bangi_landing.sender import BackgroundSender

from .conftest import SECRET, Landing, Tracker
from .landing import landing_app
from .utils import live_server, raw_get, reference_server

TOKEN = "pro-site-token-5f3a9c"
RELAY = "/bangi/postback"
RELAY_SECRET = "relay-secret-0123456789"


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    return {"altercpa_tokens": [TOKEN]}


@contextmanager
def serve(tracker: Tracker, **options: Any) -> Iterator[Landing]:
    """The test landing behind a middleware with every destination and the relay, on loopback."""
    settings = {
        "tracker_url": tracker.url,
        "campaign_id": 42,
        "secret_key": SECRET,
        "altercpa_url": tracker.url,
        "altercpa_token": TOKEN,
        "relay_path": RELAY,
        "relay_secret": RELAY_SECRET,
        **options,
    }
    middleware = BangiLanding(landing_app, **settings)
    # The campaign reads the postback's status parameter (our names map to themselves).
    mapper = {"statusMapper": {"parameter": "status"}}
    tracker.http.put(f"{tracker.url}/api/v2/campaigns/42", json=mapper, timeout=5)
    with live_server(middleware) as url, requests.Session() as browser:
        yield Landing(url, middleware, tracker, browser)


@pytest.fixture
def landing(tracker: Tracker) -> Iterator[Landing]:
    with serve(tracker) as landing:
        yield landing


def relay(landing: Landing, method: str = "GET", **params: Any) -> requests.Response:
    params.setdefault("secret", RELAY_SECRET)
    if method == "GET":
        return requests.get(landing.url + RELAY, params=params, timeout=5)
    return requests.request(method, landing.url + RELAY, data=params, timeout=5)


def visit_and_order(landing: Landing, query: str = "?click=PRO123&source=fb") -> str:
    landing.get("/" + query)
    click_id = landing.middleware.cookie.load({"HTTP_COOKIE": f"bangi_journey={landing.cookie}"})
    assert click_id is not None
    landing.post(data={"name": "Ann", "phone": "+1 555", "sub1": click_id.click_id})
    return click_id.click_id


def pro_calls(landing: Landing) -> list[tuple[str, str]]:
    landing.events()  # flushes the sender
    calls = landing.tracker.events(type="altercpa")
    return [(c["params"]["endpoint"], c["params"]["query"]) for c in calls]


# The whole chain


def test_visit_submit_approve_reach_pro_and_the_tracker_exactly_once(landing: Landing) -> None:
    click_id = visit_and_order(landing)
    landing.post(data={"name": "Ann", "phone": "+1 555", "sub1": click_id})  # submitted twice
    first = relay(landing, clickId=click_id, status="approve", payout="12.5")
    again = relay(landing, clickId=click_id, status="approve", payout="12.5")
    assert first.status_code == again.status_code == 202
    assert first.json()["eventId"] == again.json()["eventId"]

    assert pro_calls(landing) == [
        ("click.json", f"token={TOKEN}&click=PRO123&exto={click_id}"),
        ("status.json", f"token={TOKEN}&click=PRO123&status=approve&auto=1&exto={click_id}"),
    ]
    tracked = [e for e in landing.events(clickId=click_id) if e["type"] != "altercpa"]
    assert [e["type"] for e in tracked] == ["click", "lead", "postback"]
    click, lead, postback = tracked
    assert click["params"]["click"] == "PRO123" and click["params"]["source"] == "fb"
    assert "name" not in lead["params"] and "phone" not in lead["params"]
    assert (postback["status"], postback["payout"]) == ("accept", 12.5)


def test_a_later_relay_call_after_delivery_adds_nothing(landing: Landing) -> None:
    click_id = visit_and_order(landing)
    relay(landing, clickId=click_id, status="hold")
    assert len(pro_calls(landing)) == 2  # delivered, rows gone
    relay(landing, clickId=click_id, status="expect")  # the same status in our words
    landing.post(data={"sub1": click_id})  # and the form once more
    assert len(pro_calls(landing)) == 2
    assert len(landing.events(clickId=click_id, type="postback")) == 1


def test_each_new_status_is_a_new_call(landing: Landing) -> None:
    click_id = visit_and_order(landing)
    relay(landing, clickId=click_id, status="hold")
    relay(landing, clickId=click_id, status="accept")
    statuses = [query.split("status=")[1].split("&")[0] for _, query in pro_calls(landing)[1:]]
    assert statuses == ["hold", "approve"]
    assert [e["status"] for e in landing.events(type="postback")] == ["expect", "accept"]


def test_the_python_call_for_a_crm_hook(landing: Landing) -> None:
    click_id = visit_and_order(landing)
    event = landing.middleware.report_status(click_id, "cancel", extras={"reason": "no answer"})
    assert event.params == {"reason": "no answer", "status": "reject"}
    assert pro_calls(landing)[-1][1].endswith("&status=cancel&auto=1&exto=" + click_id)
    [postback] = landing.events(type="postback")
    assert postback["params"]["reason"] == "no answer"
    with pytest.raises(ValueError, match="unknown status"):
        landing.middleware.report_status(click_id, "paid")
    with pytest.raises(ValueError, match="UUID"):
        landing.middleware.report_status("PRO123", "accept")


def test_a_journey_from_no_pro_link_reaches_only_the_tracker(landing: Landing) -> None:
    click_id = visit_and_order(landing, "?source=fb")
    relay(landing, clickId=click_id, status="accept")
    assert pro_calls(landing) == []
    assert len(landing.events(clickId=click_id)) == 3


def test_pro_alone_needs_no_tracker_or_campaign(tracker: Tracker) -> None:
    with serve(tracker, tracker_url=None, campaign_id=None) as landing:
        click_id = visit_and_order(landing)
        assert pro_calls(landing) == [("click.json", f"token={TOKEN}&click=PRO123&exto={click_id}")]
        assert [e["type"] for e in landing.events()] == ["altercpa"]


def test_pros_click_id_rides_in_the_cookie_from_the_first_visit(landing: Landing) -> None:
    landing.get("/?click=PRO123")
    landing.get("/?click=OTHER")  # a later link does not replace it
    click_id = visit_and_order(landing, "")
    assert pro_calls(landing)[0][1] == f"token={TOKEN}&click=PRO123&exto={click_id}"


def test_a_wrong_token_is_one_clear_error_never_retried(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-site-token"
    with serve(tracker, altercpa_token=wrong) as landing:
        with caplog.at_level(logging.INFO, logger="bangi_landing"):
            click_id = visit_and_order(landing)
            calls = pro_calls(landing)
            sender = landing.middleware.sender
            assert isinstance(sender, BackgroundSender)
            assert sender.flush(5)
        assert calls == [("click.json", f"token=REDACTED&click=PRO123&exto={click_id}")]
        assert sender.stats.snapshot()["failed"] == 1
        assert sender.outbox is not None and sender.outbox.dead_count() == 1
        [error] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert "altercpa lead event" in error and "site token is wrong" in error
        assert wrong not in caplog.text
        # The tracker still got its events.
        assert len(landing.events(clickId=click_id, type="lead")) == 1


# The relay refuses bad postbacks, forwarding nothing


@pytest.mark.parametrize(
    ("params", "code", "error"),
    [
        ({"secret": "wrong"}, 403, "wrong or missing secret"),
        ({"secret": ""}, 403, "wrong or missing secret"),
        ({"status": "accept"}, 400, "clickId is required"),
        ({"clickId": "<script>alert(1)</script>", "status": "accept"}, 400, "clickId is required"),
        ({"clickId": "{click}", "status": "<b>paid</b>"}, 400, "status must be one of"),
        ({"clickId": "{click}"}, 400, "status is required"),
        ({"clickId": "{click}", "status": "accept", "payout": "ten"}, 400, "payout must be"),
        ({"clickId": "{click}", "status": "accept", "payout": "nan"}, 400, "payout must be"),
        ({"clickId": "{click}", "status": "accept", "payout": "9" * 400}, 400, "payout must be"),
        ({"clickId": "{click}", "status": "accept", "currency": "dollars"}, 400, "currency must"),
        ({"clickId": "{click}", "status": "accept", "currency": "U$D"}, 400, "currency must"),
    ],
)
def test_a_bad_postback_is_a_4xx_and_forwards_nothing(
    landing: Landing, params: dict[str, str], code: int, error: str
) -> None:
    click_id = visit_and_order(landing)
    params = {k: v.replace("{click}", click_id) for k, v in params.items()}
    response = relay(landing, **params)
    assert response.status_code == code
    assert response.headers["Content-Type"] == "application/json"
    assert error in response.json()["error"]
    assert "<" not in response.text and "paid" not in response.text
    assert len(pro_calls(landing)) == 1  # the lead only
    assert landing.events(type="postback") == []


def post_json(landing: Landing, body: str, query: str = "") -> requests.Response:
    return requests.post(
        f"{landing.url}{RELAY}{query}",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )


@pytest.mark.parametrize(
    ("body", "with_secret_in_query", "code"),
    [
        # Nothing is parsed for a client that has not shown the secret: a 403 whatever it sent.
        ('{"secret": "\\udfff", "clickId": "{click}", "status": "accept"}', False, 403),
        ('{"a": ' * 2000 + "1" + "}" * 2000, False, 403),
        ("not json", False, 403),
        # With the secret, what cannot be forwarded is a 400.
        ('{"a": ' * 2000 + "1" + "}" * 2000, True, 400),
        ('{"clickId": "{click}", "status": "accept", "utm": "\\udfff"}', True, 400),
        ('{"clickId": "{click}", "status": "accept", "deep": {"a": [1]}}', True, 400),
        ('{"clickId": "{click}", "status": "accept", "n": NaN}', True, 400),
        ('{"clickId": "{click}", "status": "accept", "currency": "usdd"}', True, 400),
    ],
    ids=[
        "surrogate-secret",
        "deep-unauthenticated",
        "not-json-unauthenticated",
        "deep",
        "surrogate",
        "nested",
        "nan",
        "currency",
    ],
)
def test_a_crafted_json_postback_is_refused_before_anything_is_forwarded(
    landing: Landing, body: str, with_secret_in_query: bool, code: int
) -> None:
    click_id = visit_and_order(landing)
    query = f"?secret={RELAY_SECRET}" if with_secret_in_query else ""
    response = post_json(landing, body.replace("{click}", click_id), query)
    assert response.status_code == code
    assert response.json()["status"] == "error"
    assert landing.events(type="postback") == []


def test_a_valid_currency_is_forwarded_in_capitals(landing: Landing) -> None:
    click_id = visit_and_order(landing)
    response = relay(landing, clickId=click_id, status="accept", payout="7", currency=" brl")
    assert response.status_code == 202
    [accepted] = landing.events(type="postback")
    assert (accepted["payout"], accepted["currency"]) == (7, "BRL")


def test_a_query_that_is_not_utf8_is_refused(tracker: Tracker) -> None:
    with serve(tracker) as landing, reference_server(landing.middleware) as url:
        status, body = raw_get(url, f"{RELAY}?secret={RELAY_SECRET}&clickId=\xff".encode("latin-1"))
    assert (status, body["error"]) == (400, "the query string must be UTF-8")


def test_a_repeated_parameter_is_refused(landing: Landing) -> None:
    response = requests.get(
        f"{landing.url}{RELAY}?secret={RELAY_SECRET}&clickId=8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
        "&status=accept&status=trash",
        timeout=5,
    )
    assert response.status_code == 400
    assert "given more than once" in response.json()["error"]


def test_an_oversized_postback_is_refused(landing: Landing) -> None:
    response = relay(landing, "POST", clickId="x", status="accept", junk="x" * 20_000)
    assert response.status_code == 413
    assert "over 16 KiB" in response.json()["error"]


def test_other_methods_are_refused(landing: Landing) -> None:
    response = requests.put(landing.url + RELAY, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_post_form_and_json_bodies_are_taken(landing: Landing) -> None:
    click_id = visit_and_order(landing)
    assert relay(landing, "POST", clickId=click_id, status="hold").status_code == 202
    body = {"secret": RELAY_SECRET, "clickId": click_id, "status": "trash", "offer_id": 456}
    response = requests.post(landing.url + RELAY, data=json.dumps(body), timeout=5,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 202
    trash = landing.events(type="postback")[-1]
    assert (trash["status"], trash["params"]["offer_id"]) == ("trash", 456)
    assert "secret" not in trash["params"]


def test_the_networks_own_status_words_are_mapped(tracker: Tracker) -> None:
    with serve(tracker, relay_statuses={"approved": "accept", "declined": "reject"}) as landing:
        click_id = visit_and_order(landing)
        assert relay(landing, clickId=click_id, status="Approved ").status_code == 202
        assert relay(landing, clickId=click_id, status="sale").status_code == 400
        assert [e["status"] for e in landing.events(type="postback")] == ["accept"]


def test_the_relay_needs_a_long_secret(tracker: Tracker) -> None:
    with pytest.raises(ConfigurationError, match="BANGI_RELAY_SECRET"):
        BangiLanding(landing_app, tracker_url=tracker.url, campaign_id=1, secret_key=SECRET,
                     relay_path=RELAY)  # fmt: skip
    with pytest.raises(ConfigurationError, match="at least 16"):
        BangiLanding(landing_app, tracker_url=tracker.url, campaign_id=1, secret_key=SECRET,
                     relay_path=RELAY, relay_secret="short")  # fmt: skip


def test_configuration_from_the_environment(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANGI_ALTERCPA_URL", "https://pro.example.com")
    monkeypatch.setenv("BANGI_ALTERCPA_TOKEN", TOKEN)
    monkeypatch.setenv("BANGI_ALTERCPA_CLICK_PARAM", "pro_click")
    middleware = BangiLanding(landing_app, secret_key=SECRET)
    [pro] = middleware.destinations
    assert (pro.key, pro.journey_params) == ("altercpa https://pro.example.com", ("pro_click",))
    assert middleware.campaign_id is None
    monkeypatch.delenv("BANGI_ALTERCPA_URL")
    with pytest.raises(ConfigurationError, match="altercpa_url"):
        BangiLanding(landing_app, secret_key=SECRET)
    monkeypatch.delenv("BANGI_ALTERCPA_TOKEN")
    with pytest.raises(ConfigurationError, match="no destination"):
        BangiLanding(landing_app, secret_key=SECRET)
