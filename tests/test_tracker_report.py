"""The tracker's HTML report, over real HTTP, seeded through the real API."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any
from urllib.parse import quote
from xml.etree.ElementTree import Element

import html5lib
import requests

from .conftest import Tracker, new_click

XSS = "<script>alert(1)</script>"


# Seeding through the API


def put_campaign(tracker: Tracker, campaign_id: int = 1, **body: Any) -> None:
    body = {
        "name": "Ring",
        "statusMapper": {"parameter": "status", "values": {"approved": "accept"}},
        "cost": 10,
        "currency": "USD",
        **body,
    }
    response = tracker.http.put(
        f"{tracker.url}/api/v2/campaigns/{campaign_id}", json=body, timeout=5
    )
    assert response.status_code in (200, 201), response.text


def lead(tracker: Tracker, click_id: str, **params: Any) -> None:
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/lead", params={"clickId": click_id, **params}, timeout=5
    )
    assert response.status_code == 201, response.text


def postback(tracker: Tracker, click_id: str, status: str, **params: Any) -> None:
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/postback",
        params={"clickId": click_id, "status": status, **params},
        timeout=5,
    )
    assert response.status_code == 201, response.text


# Reading pages


def get(tracker: Tracker, path: str = "/") -> requests.Response:
    response = tracker.http.get(f"{tracker.url}{path}", timeout=5)
    assert response.headers["Content-Type"].startswith("text/html")
    return response


def parse(response: requests.Response) -> Element:
    tree: Element = html5lib.parse(response.text, namespaceHTMLElements=False)
    return tree


def text(element: Element | None) -> str:
    assert element is not None
    return " ".join("".join(element.itertext()).split())


def campaign_card(page: Element, campaign_id: int) -> Element:
    card = page.find(f".//article[@data-campaign-id='{campaign_id}']")
    assert card is not None, f"no card for campaign {campaign_id}"
    return card


def metric(card: Element, name: str) -> str:
    return text(card.find(f".//*[@data-metric='{name}']"))


def statuses(card: Element) -> dict[str, int]:
    return {
        chip.get("data-status", ""): int(text(chip.find("b")))
        for chip in card.iterfind(".//li[@data-status]")
    }


def event_rows(page: Element) -> list[Element]:
    return page.findall(".//table[@id='recent-events']/tbody/tr")


def cell(row: Element, name: str) -> str:
    """The text of the row's cell whose classes include ``name``."""
    return text(next(td for td in row.iter("td") if name in (td.get("class") or "").split()))


# Tests


def test_counts_per_campaign(tracker: Tracker) -> None:
    put_campaign(tracker)
    accepted, expected, rejected, trashed, upgraded, _no_lead = (
        new_click(tracker) for _ in range(6)
    )
    for click_id in (accepted, expected, rejected, trashed, upgraded):
        lead(tracker, click_id)
    postback(tracker, accepted, "approved")
    postback(tracker, expected, "expect")
    postback(tracker, rejected, "reject")
    postback(tracker, trashed, "no-such-status")
    postback(tracker, upgraded, "expect")  # later accepted: counts once, under accept
    postback(tracker, upgraded, "approved")
    other = new_click(tracker, campaign_id=2)
    lead(tracker, other)

    page = parse(get(tracker))

    ring = campaign_card(page, 1)
    assert "Ring" in text(ring.find(".//h3"))
    assert metric(ring, "clicks") == "6"
    assert metric(ring, "leads") == "5"
    assert statuses(ring) == {"accept": 2, "expect": 1, "reject": 1, "trash": 1}
    unnamed = campaign_card(page, 2)
    assert "Campaign 2" in text(unnamed.find(".//h3"))
    assert metric(unnamed, "clicks") == "1"
    assert metric(unnamed, "leads") == "1"
    assert statuses(unnamed) == {"accept": 0, "expect": 0, "reject": 0, "trash": 0}


def test_conversion_rate(tracker: Tracker) -> None:
    clicks = [new_click(tracker) for _ in range(3)]
    lead(tracker, clicks[0])
    lead(tracker, clicks[0])  # a second lead of the same journey is still one lead
    put_campaign(tracker, 2)  # a campaign with no clicks has no rate

    page = parse(get(tracker))

    assert metric(campaign_card(page, 1), "conversion") == "33.3%"
    assert metric(campaign_card(page, 2), "conversion") == "—"


def test_payout_sum(tracker: Tracker) -> None:
    put_campaign(tracker)  # cost 10 USD
    first, second, explicit, pending, _never_converted = (new_click(tracker) for _ in range(5))
    postback(tracker, first, "approved")
    postback(tracker, second, "approved")
    postback(tracker, explicit, "approved", payout="2.5")
    postback(tracker, pending, "expect")  # expected money is not paid money
    put_campaign(tracker, 2, currency="EUR")
    postback(tracker, new_click(tracker, 2), "approved", payout="7", currency="GBP")

    page = parse(get(tracker))

    assert metric(campaign_card(page, 1), "payout") == "22.50 USD"
    # A postback's own currency is kept, not relabelled with the campaign's.
    assert metric(campaign_card(page, 2), "payout") == "7.00 GBP"


def test_funnel(tracker: Tracker) -> None:
    put_campaign(tracker)
    journeys = [new_click(tracker) for _ in range(4)]
    lead(tracker, journeys[0])
    lead(tracker, journeys[1])
    postback(tracker, journeys[0], "approved")

    card = campaign_card(parse(get(tracker)), 1)

    funnel = card.find(".//*[@class='funnel']")
    assert funnel is not None
    steps = funnel.findall("div[@data-step]")
    assert [(step.get("data-step"), step.get("data-count")) for step in steps] == [
        ("clicks", "4"),
        ("leads", "2"),
        ("accepted", "1"),
    ]
    widths = [step.find(".//div[@class='bar']").get("style") for step in steps]  # type: ignore[union-attr]
    assert widths == ["width: 100.0%", "width: 50.0%", "width: 25.0%"]


def test_recent_events_newest_first(tracker: Tracker) -> None:
    put_campaign(tracker)
    first = new_click(tracker, sub1="a")
    lead(tracker, first, email="x@example.com")
    postback(tracker, first, "approved")
    second = new_click(tracker)

    rows = event_rows(parse(get(tracker)))

    assert [(cell(row, "type"), cell(row, "click-id")) for row in rows] == [
        ("click", second),
        ("postback", first),
        ("lead", first),
        ("click", first),
    ]
    postback_row = rows[1]
    assert cell(postback_row, "campaign") == "Ring"
    assert cell(postback_row, "status") == "accept"
    assert cell(postback_row, "payout") == "10.00 USD"
    assert cell(rows[2], "params") == "email=x@example.com"
    link = rows[1].find(".//a")
    assert link is not None
    assert link.get("href") == f"/journeys/{first}"


def test_recent_events_show_the_latest_fifty(tracker: Tracker) -> None:
    clicks = [new_click(tracker) for _ in range(55)]

    response = get(tracker)
    rows = event_rows(parse(response))

    assert len(rows) == 50
    assert cell(rows[0], "click-id") == clicks[-1]
    assert cell(rows[-1], "click-id") == clicks[5]
    assert "of 55 events" in response.text


def test_long_params_are_truncated(tracker: Tracker) -> None:
    new_click(tracker, long="y" * 500, **{f"p{n}": n for n in range(30)})

    row = event_rows(parse(get(tracker)))[0]

    shown = cell(row, "params")
    assert len(shown) <= 120
    assert shown.startswith("long=yyyy")
    assert shown.endswith("…")


def test_journey_lists_events_in_order(tracker: Tracker) -> None:
    put_campaign(tracker)
    journey = new_click(tracker, sub1="ad-7")
    lead(tracker, journey, name="Ann")
    postback(tracker, journey, "expect")
    postback(tracker, journey, "approved", payout="12")
    new_click(tracker)  # someone else's journey

    response = get(tracker, f"/journeys/{journey.upper()}")

    assert response.status_code == 200
    page = parse(response)
    events = page.findall(".//ol[@id='journey']/li")
    assert [event.get("data-type") for event in events] == ["click", "lead", "postback", "postback"]
    assert "expect" in text(events[2])
    assert "accept" in text(events[3])
    assert "12.00 USD" in text(events[3])
    params = {text(tr.find("th")): text(tr.find("td")) for tr in events[1].iter("tr")}
    assert params == {"name": "Ann"}
    assert {text(tr.find("th")): text(tr.find("td")) for tr in events[3].iter("tr")} == {
        "status": "approved",
        "payout": "12",
    }


def test_journey_without_events(tracker: Tracker) -> None:
    response = get(tracker, f"/journeys/{uuid.uuid4()}")

    assert response.status_code == 200
    assert "No events for this clickId" in text(parse(response))


def test_invalid_click_id_is_404(tracker: Tracker) -> None:
    for raw in ("not-a-uuid", "{8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1}", XSS):
        response = get(tracker, f"/journeys/{quote(raw, safe='')}")

        assert response.status_code == 404
        assert "Not a clickId" in response.text
        assert XSS not in response.text


def test_empty_state(tracker: Tracker) -> None:
    response = get(tracker)

    assert response.status_code == 200
    empty = parse(response).find(".//*[@id='empty-state']")
    assert empty is not None
    instructions = text(empty)
    assert "curl -X POST" in instructions
    assert f"{tracker.url}/api/v2/track/click" in instructions
    assert '"campaignId": 1' in instructions
    assert event_rows(parse(response)) == []


def test_values_from_the_database_are_escaped(tracker: Tracker) -> None:
    put_campaign(tracker, name="<b>Bold</b>")
    journey = new_click(tracker, sub1=XSS)
    lead(tracker, journey, **{XSS: "key too"})

    for path in ("/", f"/journeys/{journey}"):
        html = get(tracker, path).text

        assert XSS not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<b>Bold</b>" not in html
        assert "&lt;b&gt;Bold&lt;/b&gt;" in html


def test_pages_are_not_cached(tracker: Tracker) -> None:
    journey = new_click(tracker)
    for path in ("/", f"/journeys/{journey}", "/journeys/nope"):
        response = get(tracker, path)

        assert response.headers["Cache-Control"] == "no-store"


def test_a_lead_card_says_which_fields_were_held_back(tracker: Tracker) -> None:
    journey = new_click(tracker)
    for params in (
        {"offer_id": "7", "withheldFields": ["name", "phone"]},  # as the middleware sends it
        {"withheldFields": ["email"]},
        {"withheldFields": []},
        {"offer_id": "8"},
    ):
        response = tracker.http.post(
            f"{tracker.url}/api/v2/track/lead", json={"clickId": journey, **params}, timeout=5
        )
        assert response.status_code == 201, response.text

    cards = parse(get(tracker, f"/journeys/{journey}")).findall(".//ol[@id='journey']/li")

    notes = [text(card.find(".//p[@class='withheld']")) for card in cards[1:3]]
    assert notes == [
        "2 fields held back as personal data: name, phone",
        "1 field held back as personal data: email",
    ]
    assert {text(tr.find("th")) for tr in cards[1].iter("tr")} == {"offer_id"}
    for card in (cards[0], *cards[3:]):  # the click, and leads with nothing held back
        assert card.find(".//p[@class='withheld']") is None
        assert "held back" not in text(card)


def test_the_summary_totals_payout_per_currency(tracker: Tracker) -> None:
    put_campaign(tracker)  # cost 10 USD
    postback(tracker, new_click(tracker), "approved")
    postback(tracker, new_click(tracker), "approved", payout="2.5")
    put_campaign(tracker, 2, currency="EUR")
    postback(tracker, new_click(tracker, 2), "approved", payout="7", currency="GBP")
    postback(tracker, new_click(tracker, 2), "approved", payout="1000")
    postback(tracker, new_click(tracker, 2), "approved", payout="0.5", currency="USD")

    total = parse(get(tracker)).find(".//*[@data-total='payout']")

    assert total is not None
    assert [text(line) for line in total] == ["1,000.00 EUR", "7.00 GBP", "13.00 USD"]


def test_the_summary_payout_is_zero_before_any_is_accepted(tracker: Tracker) -> None:
    put_campaign(tracker)
    new_click(tracker)

    assert text(parse(get(tracker)).find(".//*[@data-total='payout']")) == "0.00"


def test_pages_show_rows_they_could_not_read_back(tracker: Tracker) -> None:
    """Rows an older version (or another program) stored: too deep, not JSON, not UTF-8."""
    journey = str(uuid.uuid4())
    deep = "[" * 975 + "]" * 975
    rows = [
        f'{{"d":{deep}}}'.encode(),
        b'{"cut": "sho',
        b'{"name": "Jo\xe3o \xff<script>"}',  # Latin-1, not UTF-8
    ]
    with sqlite3.connect(tracker.store.path) as db:
        for params in rows:
            db.execute(
                "INSERT INTO events (type, click_id, params, received_at)"
                " VALUES ('lead', ?, CAST(? AS TEXT), '2026-01-01T00:00:00.000000Z')",
                (journey, params),
            )
        db.execute(
            "INSERT INTO network_orders (click_id, params, received_at)"
            " VALUES (?, ?, '2026-01-01T00:00:00.000000Z')",
            (journey, f'{{"sub1":"{journey}","d":{deep}}}'),
        )
    db.close()

    api = tracker.http.get(f"{tracker.url}/api/v2/events", timeout=5)
    assert api.status_code == 200
    shown = [event["params"] for event in api.json()["events"]]
    assert shown == [f'{{"d":{deep}}}', '{"cut": "sho', {"name": "Jo\ufffdo \ufffd<script>"}]
    for path in ("/", f"/journeys/{journey}", "/network"):
        response = get(tracker, path)
        assert response.status_code == 200, path
        assert "<script>" not in response.text
    journey_page = get(tracker, f"/journeys/{journey}").text
    assert "[[[[" in journey_page
    assert "&lt;script&gt;" in journey_page
