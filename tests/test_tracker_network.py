"""The tracker's fake CPA network over real HTTP: orders in, postbacks out to the real API."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import Element

import html5lib
import pytest
import requests

from bangi_landing.tracker import create_app, network

from .conftest import Tracker, new_click
from .utils import Sink, live_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

XSS = "<script>alert(1)</script>"
MAPPER = {
    "parameter": "status",
    "values": {"approved": "accept", "pending": "expect", "rejected": "reject"},
}


@contextmanager
def network_tracker(
    tmp_path: Path, postback_url: str | None = None, **config: Any
) -> Iterator[Tracker]:
    """The tracker with the fake network, on a real socket; it posts back to ``postback_url``.

    By default to the tracker's own API, as ``bangi-landing tracker`` has it.
    """
    app = create_app(tmp_path / "tracker.sqlite3", network_postback_url=postback_url)
    app.config.update(config)
    store = app.extensions["bangi_tracker"]
    try:
        with live_server(app) as url, requests.Session() as http:
            if postback_url is None:
                app.config[network.POSTBACK_URL] = network.tracker_postback_url(url)
            yield Tracker(url, app, store, http)
    finally:
        store.close()


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    with network_tracker(tmp_path) as tracker:
        yield tracker


def order(tracker: Tracker, **fields: Any) -> int:
    response = tracker.http.post(f"{tracker.url}/network/orders", data=fields, timeout=5)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "ok"
    order_id: int = body["id"]
    return order_id


def press(tracker: Tracker, order_id: int, status: str, **headers: str) -> requests.Response:
    """Click a button on the /network page."""
    return tracker.http.post(
        f"{tracker.url}/network/orders/{order_id}/postback",
        data={"status": status},
        headers=headers,
        allow_redirects=False,
        timeout=15,
    )


def put_demo_campaign(tracker: Tracker) -> None:
    response = tracker.http.put(
        f"{tracker.url}/api/v2/campaigns/1",
        json={"name": "Demo", "statusMapper": MAPPER, "cost": 10, "currency": "USD"},
        timeout=5,
    )
    assert response.status_code == 201, response.text


def page(tracker: Tracker) -> tuple[requests.Response, Element]:
    response = tracker.http.get(f"{tracker.url}/network", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    tree: Element = html5lib.parse(response.text, namespaceHTMLElements=False)
    return response, tree


def rows(tree: Element) -> list[Element]:
    return tree.findall(".//table[@id='orders']/tbody/tr")


def cell(row: Element, name: str) -> str:
    td = next(td for td in row.iter("td") if name in (td.get("class") or "").split())
    return " ".join("".join(td.itertext()).split())


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# Order intake


def test_orders_are_stored_as_sent_and_listed_newest_first(tracker: Tracker) -> None:
    first_click = str(uuid.uuid4()).upper()
    second_click = str(uuid.uuid4())
    first = order(
        tracker, sub1=first_click, name="Ana", phone="+55 11 91234-5678", offer_id="1001", sub2="x"
    )
    response = tracker.http.post(
        f"{tracker.url}/network/orders",
        json={"sub1": second_click, "name": "Bo", "phone": "5551234567", "offer_id": 7},
        timeout=5,
    )
    assert response.status_code == 201
    second = response.json()["id"]

    assert second > first
    stored = {o["id"]: o for o in tracker.store.network_orders()}
    assert stored[first]["params"] == {
        "sub1": first_click,
        "name": "Ana",
        "phone": "+55 11 91234-5678",
        "offer_id": "1001",
        "sub2": "x",
    }
    assert stored[first]["clickId"] == first_click.lower()
    assert stored[second]["params"]["offer_id"] == 7  # JSON keeps its types

    _, tree = page(tracker)
    listed = rows(tree)
    assert [row.get("data-order-id") for row in listed] == [str(second), str(first)]
    assert cell(listed[1], "click-id") == first_click.lower()
    assert (cell(listed[1], "name"), cell(listed[1], "phone")) == ("Ana", "+55 11 91234-5678")
    assert cell(listed[1], "offer") == "1001"
    assert cell(listed[1], "extras") == "sub2=x"
    assert cell(listed[1], "postback") == "none yet"
    buttons = [button.text for button in listed[1].iter("button")]
    assert buttons == ["Approve", "Hold", "Reject", "Trash"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"data": {"name": "Ana"}}, "sub1 is required"),
        ({"data": {"sub1": "not-a-uuid"}}, "sub1 must be a clickId"),
        ({"data": {"sub1": ""}}, "sub1 must be a clickId"),
        ({"data": [("sub1", str(uuid.uuid4())), ("sub1", str(uuid.uuid4()))]}, "sub1 must"),
        ({"json": {"sub1": 42}}, "sub1 must be a clickId"),
        ({"json": [{"sub1": str(uuid.uuid4())}]}, "JSON object"),
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, "must be JSON"),
    ],
)
def test_an_invalid_order_is_refused_with_json(
    tracker: Tracker, body: dict[str, Any], error: str
) -> None:
    response = tracker.http.post(f"{tracker.url}/network/orders", timeout=5, **body)

    assert response.status_code == 400
    assert error in response.json()["error"]
    assert tracker.store.count_network_orders() == 0


def test_other_bodies_are_refused_with_json(tracker: Tracker) -> None:
    url = f"{tracker.url}/network/orders"
    wrong_type = tracker.http.post(
        url, data=b"sub1=x", headers={"Content-Type": "text/plain"}, timeout=5
    )
    too_big = tracker.http.post(
        url, data={"sub1": str(uuid.uuid4()), "note": "x" * (65 * 1024)}, timeout=5
    )

    assert wrong_type.status_code == 415
    assert "form-encoded or as JSON" in wrong_type.json()["error"]
    assert too_big.status_code == 413
    assert "64 KiB" in too_big.json()["error"]
    assert tracker.store.count_network_orders() == 0


# Postbacks


@pytest.mark.parametrize(
    ("button", "status", "payout"),
    [
        ("approved", "accept", 10.0),
        ("pending", "expect", 10.0),
        ("rejected", "reject", None),
        ("trash", "trash", None),
    ],
)
def test_a_button_sends_the_postback_to_the_tracker(
    tracker: Tracker, button: str, status: str, payout: float | None
) -> None:
    put_demo_campaign(tracker)
    click_id = new_click(tracker)
    order_id = order(tracker, sub1=click_id, name="Ana", phone="5551234567", offer_id="1001")

    response = press(tracker, order_id, button)

    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/network"
    postbacks = tracker.events(type="postback")
    assert len(postbacks) == 1
    postback = postbacks[0]
    assert postback["clickId"] == click_id
    assert postback["campaignId"] == 1
    assert postback["status"] == status
    assert postback["payout"] == payout
    assert postback["params"] == {
        "status": button,
        "payout": "10" if button in ("approved", "pending") else "0",
        "offer_id": "1001",
    }
    _, tree = page(tracker)
    assert cell(rows(tree)[0], "postback").startswith(f"{button} HTTP 201 · ")


def test_the_latest_postback_is_shown_and_each_one_is_sent(tracker: Tracker) -> None:
    put_demo_campaign(tracker)
    click_id = new_click(tracker)
    order_id = order(tracker, sub1=click_id, offer_id="1001")

    assert press(tracker, order_id, "pending").status_code == 303
    assert press(tracker, order_id, "approved").status_code == 303

    assert [event["status"] for event in tracker.events(type="postback")] == ["expect", "accept"]
    assert tracker.store.network_order(order_id)["postbackStatus"] == "approved"  # type: ignore[index]


def test_a_postback_for_an_unknown_click_is_still_recorded(tracker: Tracker) -> None:
    click_id = str(uuid.uuid4())
    order_id = order(tracker, sub1=click_id)  # no offer_id: sent empty

    assert press(tracker, order_id, "approved").status_code == 303

    [postback] = tracker.events(type="postback")
    assert (postback["clickId"], postback["campaignId"], postback["status"]) == (
        click_id,
        None,
        "trash",
    )
    assert postback["params"] == {"status": "approved", "payout": "10", "offer_id": ""}


def test_the_postback_url_and_payout_can_be_configured(tmp_path: Path) -> None:
    received: list[tuple[str, str]] = []

    def relay(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        received.append((environ["PATH_INFO"], environ["QUERY_STRING"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with live_server(relay) as relay_url:
        template = (
            f"{relay_url}/pb/{{sub1}}?s={{status}}&p={{payout}}&o={{offer_id}}&keep={{other}}"
        )
        with network_tracker(tmp_path, template, BANGI_NETWORK_PAYOUT="2.5") as tracker:
            click_id = str(uuid.uuid4())
            order_id = order(tracker, sub1=click_id, offer_id="a&b c/#")
            response = press(tracker, order_id, "approved")
            _, tree = page(tracker)
            tracker_postbacks = tracker.events(type="postback")

    assert response.status_code == 303
    [(path, query)] = received
    assert path == f"/pb/{click_id}"
    assert "&o=a%26b%20c%2F%23&" in query
    assert parse_qs(query) == {
        "s": ["approved"],
        "p": ["2.5"],
        "o": ["a&b c/#"],
        "keep": ["{other}"],
    }
    assert cell(rows(tree)[0], "postback").startswith("approved HTTP 200")
    assert tracker_postbacks == []  # it went to the relay, not the tracker


def test_an_unreachable_postback_url_is_recorded_as_failed(tmp_path: Path) -> None:
    template = f"{closed_port()}/postback?clickId={{sub1}}"
    with network_tracker(tmp_path, template) as tracker:
        order_id = order(tracker, sub1=str(uuid.uuid4()))
        response = press(tracker, order_id, "approved")
        _, tree = page(tracker)

    assert response.status_code == 303
    assert cell(rows(tree)[0], "postback").startswith("approved failed: ConnectionError")


def test_bad_postback_requests_send_nothing(tracker: Tracker) -> None:
    order_id = order(tracker, sub1=str(uuid.uuid4()))

    assert press(tracker, order_id, "accept").status_code == 400
    assert press(tracker, order_id + 1, "approved").status_code == 404
    assert press(tracker, order_id, "approved", Origin="https://evil.example").status_code == 403
    listing = tracker.http.get(f"{tracker.url}/network/orders/{order_id}/postback", timeout=5)
    assert listing.status_code == 405

    assert tracker.events(type="postback") == []
    assert tracker.store.network_order(order_id)["postbackStatus"] is None  # type: ignore[index]
    # The page's own buttons send their origin, which is accepted.
    assert press(tracker, order_id, "approved", Origin=tracker.url).status_code == 303


# The page


def test_the_page_escapes_what_orders_carry(tracker: Tracker) -> None:
    order(tracker, sub1=str(uuid.uuid4()), name=XSS, phone=XSS, offer_id=XSS, **{XSS: XSS})

    response, tree = page(tracker)

    assert "<script" not in response.text
    [row] = rows(tree)
    assert cell(row, "name") == XSS
    assert cell(row, "extras") == f"{XSS}={XSS}"
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "form-action 'self'" in response.headers["Content-Security-Policy"]


def test_the_empty_page_shows_how_to_send_an_order(tracker: Tracker) -> None:
    response, tree = page(tracker)

    assert rows(tree) == []
    assert f"{tracker.url}/network/orders" in response.text


# Answering like a real network, failures included


def test_an_order_retried_with_its_idempotency_key_is_taken_once(tracker: Tracker) -> None:
    click_id, intake = str(uuid.uuid4()), f"{tracker.url}/network/orders"
    answers = [
        tracker.http.post(
            intake, data={"sub1": click_id}, headers={"Idempotency-Key": key}, timeout=5
        )
        for key in ("k1", "k1", "k2")
    ]

    assert [a.status_code for a in answers] == [201, 200, 201]
    first, again, other = (a.json() for a in answers)
    assert again == {"status": "ok", "id": first["id"], "duplicate": True}
    assert other["id"] != first["id"]  # another key is another order
    assert [cell(row, "click-id") for row in rows(page(tracker)[1])] == [click_id] * 2


def switch(tracker: Tracker, failure: str, **headers: str) -> requests.Response:
    """Press a button of the failure switch on the /network page."""
    return tracker.http.post(
        f"{tracker.url}/network/failure",
        data={"failure": failure},
        headers=headers,
        allow_redirects=False,
        timeout=5,
    )


@pytest.mark.parametrize("by", ["switch", "query"])
def test_the_intake_fails_as_told_by_the_switch_or_the_query(tmp_path: Path, by: str) -> None:
    with network_tracker(tmp_path, **{network.STALL: 1.0}) as tracker:

        def send(failure: str, read_timeout: float = 5.0) -> requests.Response:
            query = ""
            if by == "switch":
                assert switch(tracker, failure, Origin=tracker.url).status_code == 303
            else:
                query = f"?fail={failure}"
            return tracker.http.post(
                f"{tracker.url}/network/orders{query}",
                data={"sub1": str(uuid.uuid4()), "phone": "5551234567"},
                timeout=(5, read_timeout),
            )

        down = send("500")
        assert down.status_code == 500 and "the network is down" in down.json()["error"]
        refused = send("error")
        assert refused.status_code == 200 and refused.json()["status"] == "error"
        assert tracker.store.count_network_orders() == 0  # neither took the order
        with pytest.raises(requests.ReadTimeout):
            send("timeout", read_timeout=0.3)
        assert tracker.store.count_network_orders() == 1  # taken; only the answer was late
        assert send("ok").status_code == 201
        pressed = page(tracker)[1].findall(".//div[@id='failure-switch']//button")
        on = [b.text for b in pressed if b.get("aria-pressed") == "true"]
        assert on == ["Take orders"]


def test_bad_failure_switches_are_refused(tracker: Tracker) -> None:
    assert switch(tracker, "500", Origin="https://evil.example").status_code == 403
    assert switch(tracker, "sometimes").status_code == 400
    unknown = tracker.http.post(
        f"{tracker.url}/network/orders?fail=sometimes", data={"sub1": CLICK_ID}, timeout=5
    )
    assert unknown.status_code == 400 and "fail must be one of" in unknown.json()["error"]
    assert order(tracker, sub1=CLICK_ID) > 0  # the switch is still off


def test_build_postback_url() -> None:
    url = network.build_postback_url(
        network.tracker_postback_url("http://127.0.0.1:5001/"),
        sub1="8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1",
        status="approved",
        payout="10",
        offer_id="4 5&6",
    )
    assert url == (
        "http://127.0.0.1:5001/api/v2/track/postback?clickId=8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
        "&status=approved&payout=10&offer_id=4%205%266"
    )


# Crafted input: a 4xx with a JSON error, never a 500, and nothing stored or sent

CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (f'{{"sub1": "{CLICK_ID}", "name": "\\udfff"}}', "surrogate"),
        (f'{{"sub1": "{CLICK_ID}", "\\ud800": "x"}}', "surrogate"),
        (f'{{"sub1": "{CLICK_ID}", "d": {"[" * 975}{"]" * 975}}}', "32 levels"),
        (f'{{"sub1": "{CLICK_ID}", "price": NaN}}', "NaN"),
        (f'{{"sub1": "{CLICK_ID}", "price": 1e999}}', "out of range"),
        (f'{{"sub1": "{CLICK_ID}", "n": {"9" * 5000}}}', "JSON"),
    ],
    ids=["surrogate-value", "surrogate-name", "nested-975", "nan", "infinity", "5000-digits"],
)
def test_the_order_intake_refuses_crafted_json(tracker: Tracker, body: str, error: str) -> None:
    response = tracker.http.post(
        f"{tracker.url}/network/orders",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 400, response.text
    assert error in response.json()["error"]
    assert tracker.store.count_network_orders() == 0
    assert page(tracker)[0].status_code == 200


@pytest.mark.parametrize("raw_id", ["9" * 5000, "9" * 25, str(2**63), "0", "-1", "abc", "1.5"])
def test_a_button_for_a_crafted_order_id_is_a_json_404(tracker: Tracker, raw_id: str) -> None:
    order(tracker, sub1=str(uuid.uuid4()))

    response = tracker.http.post(
        f"{tracker.url}/network/orders/{raw_id}/postback",
        data={"status": "approved"},
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 404, response.text
    assert response.json() == {"error": "no such order"}
    assert tracker.events(type="postback") == []


# Where postbacks go: the configuration, never the request


def test_the_host_header_does_not_choose_where_the_postback_goes(tracker: Tracker) -> None:
    sink = Sink()
    click_id = new_click(tracker)
    order_id = order(tracker, sub1=click_id)
    with live_server(sink) as sink_url:
        response = press(tracker, order_id, "approved", Host=sink_url.removeprefix("http://"))

    assert response.status_code == 303
    assert sink.received == []
    [postback] = tracker.events(type="postback")
    assert postback["clickId"] == click_id


def test_without_a_postback_url_a_button_records_the_status_and_sends_nothing(
    tmp_path: Path,
) -> None:
    app = create_app(tmp_path / "tracker.sqlite3")
    with live_server(app) as url, requests.Session() as http:
        tracker = Tracker(url, app, app.extensions["bangi_tracker"], http)
        order_id = order(tracker, sub1=new_click(tracker))
        assert press(tracker, order_id, "approved").status_code == 303
        response, tree = page(tracker)
        events = tracker.events(type="postback")
    tracker.store.close()

    assert events == []
    assert cell(rows(tree)[0], "postback").startswith(f"approved {network.NOT_SENT}")
    assert "No postback URL is configured" in response.text


def test_the_page_and_the_log_never_show_the_relays_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-relay-value"
    template = f"{closed_port()}/bangi/postback?secret={secret}&clickId={{sub1}}"
    with network_tracker(tmp_path, template) as tracker:
        order_id = order(tracker, sub1=str(uuid.uuid4()))
        with caplog.at_level(logging.WARNING, logger=network.__name__):
            assert press(tracker, order_id, "approved").status_code == 303
        response, tree = page(tracker)

    assert cell(rows(tree)[0], "postback").startswith("approved failed: ConnectionError")
    assert "/bangi/postback?secret=&lt;redacted&gt;&amp;clickId={sub1}" in response.text
    assert secret not in response.text
    [failure] = [r for r in caplog.records if r.name == network.__name__]
    message = failure.getMessage()
    assert "/bangi/postback?secret=<redacted>" in message
    assert secret not in message
    assert secret not in caplog.text
