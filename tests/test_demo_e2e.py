"""`bangi-landing demo` as a visitor meets it: the wrapped landing and the tracker, over HTTP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import html5lib
import pytest
import requests

from .utils import eventually

T = TypeVar("T")
SUB1 = re.compile(r'<input type="hidden" name="sub1" value="([0-9a-f-]{36})"(?: /)?>')


@dataclass
class Demo:
    landing: str
    tracker: str
    process: subprocess.Popen[str]
    log: Path  # its standard error: the servers' request logs

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        response = requests.get(f"{self.tracker}/api/v2/events", params=filters, timeout=5)
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def network_orders(self) -> list[dict[str, str]]:
        """The orders on the fake network's page, each one's fields by column."""
        page = requests.get(f"{self.tracker}/network", timeout=5).text
        tree = html5lib.parse(page, namespaceHTMLElements=False)
        return [
            {
                (cell.get("class") or "").split()[0]: "".join(cell.itertext()).strip()
                for cell in row.iter("td")
            }
            for row in tree.findall(".//table[@id='orders']/tbody/tr")
        ]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    log = tmp_path / "demo.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bangi_landing",
                "demo",
                "--port",
                "0",
                "--tracker-port",
                "0",
                "--db",
                str(tmp_path / "demo.sqlite3"),
                "--outbox",
                str(tmp_path / "outbox.sqlite3"),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    urls = {}
    for _ in range(2):
        name, url = process.stdout.readline().strip().split(": ", 1)
        urls[name] = url.rstrip("/")
    try:
        yield Demo(urls["Landing"], urls["Tracker"], process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_a_visitor_journey_from_click_to_postback(demo: Demo) -> None:
    browser = requests.Session()

    # The landing page: one click with the ad's parameters, a cookie, the form field.
    page = browser.get(f"{demo.landing}/?source=facebook&ad_name=video-01&click=PRO7", timeout=5)
    assert page.status_code == 200
    [click] = eventually(lambda: demo.events(type="click"))
    click_id = click["clickId"]
    assert click["campaignId"] == 1
    assert click["params"]["source"] == "facebook"
    assert click["params"]["ad_name"] == "video-01"
    assert browser.cookies.get("bangi_journey")
    assert SUB1.findall(page.text) == [click_id]  # the order form; the page has one
    # The demo splits its headline: the click carries the variant the visitor saw.
    variant = "b" if "Wake up rested" in page.text else "a"
    assert click["params"]["lander"] == variant

    # A second page view is the same journey: no second click.
    again = browser.get(f"{demo.landing}/?source=facebook", timeout=5)
    assert SUB1.findall(again.text) == [click_id]
    assert ("Wake up rested" in again.text) == (variant == "b")  # the same headline

    # The order: the landing's thank-you page, the lead without personal data.
    order = browser.post(
        f"{demo.landing}/submit?source=facebook",
        data={"sub1": click_id, "name": "Ana Lima", "phone": "+55 11 99999 0000"},
        timeout=5,
    )
    assert order.url == f"{demo.landing}/thanks"
    [lead] = eventually(lambda: demo.events(type="lead"))
    assert lead["clickId"] == click_id
    assert lead["campaignId"] == 1
    assert lead["params"]["lander"] == variant
    assert "Ana Lima" not in str(lead["params"])
    assert "99999" not in str(lead["params"])
    assert len(demo.events(type="click")) == 1

    # The middleware forwarded the order to the network, once, with sub1, the form's
    # fields, the offer and the variant; the network's Approve button posts back to the
    # landing's relay, which passes the status on to the tracker and to AlterCPA Pro.
    [order] = eventually(lambda: demo.network_orders())
    assert order["click-id"] == click_id
    assert (order["name"], order["offer"], order["extras"]) == (
        "Ana Lima",
        "1001",
        f"sub2={variant}",
    )
    network = requests.get(f"{demo.tracker}/network", timeout=5).text
    order_id = re.search(r'action="/network/orders/(\d+)/postback"', network)
    assert order_id
    requests.post(
        f"{demo.tracker}/network/orders/{order_id.group(1)}/postback",
        data={"status": "approved"},
        timeout=5,
    ).raise_for_status()
    [postback] = eventually(lambda: demo.events(type="postback"))
    assert (postback["clickId"], postback["status"], postback["payout"]) == (click_id, "accept", 10)
    pro = eventually(lambda: demo.events(type="altercpa")[1:])
    assert [call["params"]["status"] for call in demo.events(type="altercpa")] == [
        "wait",
        "approve",
    ]
    assert all(call["clickId"] == click_id for call in pro)

    # The campaign report compares the headlines.
    index = requests.get(f"{demo.tracker}/", timeout=5).text
    assert 'id="variants-1"' in index and f'data-variant="{variant}"' in index

    # The report shows the journey.
    report = requests.get(f"{demo.tracker}/journeys/{click_id}", timeout=5).text
    for kind in ("click", "lead", "postback"):
        assert kind in report


def test_the_injected_page_has_the_same_dom_plus_the_field(demo: Demo) -> None:
    from demo_site import create_app

    wrapped = requests.get(f"{demo.landing}/?a=1", timeout=5).text
    [click_id] = SUB1.findall(wrapped)
    # The bare app with the headline variant the middleware gave the wrapped page.
    variant = "b" if "Wake up rested" in wrapped else "a"
    bare = (
        create_app()
        .test_client()
        .get("/?a=1", environ_base={"bangi.variant": variant})
        .get_data(as_text=True)
    )

    def dom(html: str) -> str:
        tree = html5lib.parse(html, namespaceHTMLElements=False)
        for form in tree.iter("form"):
            for index, field in enumerate(list(form)):
                if field.tag == "input" and field.get("name") == "sub1":
                    assert field.get("value") == click_id
                    # Keep the text that followed the field where it was.
                    before = form[index - 1] if index else None
                    tail = field.tail or ""
                    if before is None:
                        form.text = (form.text or "") + tail
                    else:
                        before.tail = (before.tail or "") + tail
                    form.remove(field)
        walker = html5lib.getTreeWalker("etree")
        return html5lib.serializer.HTMLSerializer().render(walker(tree))  # type: ignore[no-any-return]

    assert dom(wrapped) == dom(bare)
    assert "sub1" not in bare


def test_each_request_log_line_names_its_server(demo: Demo) -> None:
    requests.get(f"{demo.landing}/?source=log-test", timeout=5).raise_for_status()
    requests.get(f"{demo.tracker}/", timeout=5).raise_for_status()
    eventually(lambda: demo.events(type="click"))  # the landing's click, in the tracker's log

    def request_log() -> list[str]:
        """The request-log lines, once the click's delivery is among them."""
        lines = [line for line in demo.log.read_text().splitlines() if " - - [" in line]
        return lines if any("POST /api/v2/track/click" in line for line in lines) else []

    lines = eventually(request_log)
    assert all(line.startswith(("landing | 127.0.0.1 - - [", "tracker | ")) for line in lines)
    assert any(line.startswith("landing | ") and "GET /?source=log-test" in line for line in lines)
    assert any(line.startswith("tracker | ") and '"GET / HTTP/1.1"' in line for line in lines)
    assert any(line.startswith("tracker | ") and "/api/v2/track/click" in line for line in lines)
