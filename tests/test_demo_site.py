"""The demo landing over real HTTP, its orders going to a capture server playing the network."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import Element

import html5lib
import pytest
import requests

from demo_site import create_app

from .utils import live_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

XSS = '"><script>alert(1)</script>'
VALID = {"name": "Ana Souza", "phone": "+55 (11) 91234-5678"}


@dataclass
class Capture:
    """A WSGI app recording every request; it answers ``status``."""

    status: str = "201 Created"
    requests: list[tuple[str, str, str, bytes]] = field(default_factory=list)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.requests.append(
            (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("CONTENT_TYPE", ""), body)
        )
        start_response(self.status, [("Content-Type", "application/json")])
        return [b'{"status": "ok"}']

    def forms(self) -> list[dict[str, list[str]]]:
        return [parse_qs(body.decode(), strict_parsing=True) for *_, body in self.requests]


@pytest.fixture
def network() -> Iterator[tuple[Capture, str]]:
    capture = Capture()
    with live_server(capture) as url:
        yield capture, f"{url}/orders"


@contextmanager
def serve(app: WSGIApplication) -> Iterator[tuple[str, requests.Session]]:
    with live_server(app) as url, requests.Session() as http:
        yield url, http


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/orders"


def parse(response: requests.Response) -> Element:
    tree: Element = html5lib.parse(response.text, namespaceHTMLElements=False)
    return tree


def order_form(page: Element) -> Element:
    form = page.find(".//form[@id='order_form']")
    assert form is not None
    return form


def submit(url: str, http: requests.Session, query: str = "", **data: Any) -> requests.Response:
    return http.post(f"{url}/submit{query}", data=data, allow_redirects=False, timeout=15)


def test_product_page_has_the_order_form_and_no_tracking_of_its_own(network: Any) -> None:
    _, network_url = network
    with serve(create_app(network_url=network_url)) as (url, http):
        response = http.get(f"{url}/", timeout=5)
        page = parse(response)
        css = http.get(f"{url}/static/style.css", timeout=5)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Aurora smart ring" in response.text
    form = order_form(page)
    assert (form.get("action"), form.get("method")) == ("/submit", "post")
    inputs = {element.get("name"): element for element in form.iter("input")}
    assert set(inputs) == {"name", "phone"}
    assert all(element.get("required") is not None for element in inputs.values())
    assert form.find(".//button[@type='submit']") is not None
    # The middleware adds sub1; the page itself carries no tracking code at all.
    assert "sub1" not in response.text
    assert page.find(".//script") is None
    # Self-contained: nothing is loaded from another host.
    for element in page.iter():
        for attribute in ("src", "href"):
            link = element.get(attribute)
            assert link is None or link.startswith(("/", "#")), link
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


def test_query_string_is_kept_in_the_form_action_and_escaped(network: Any) -> None:
    _, network_url = network
    params = [("utm_source", "fb"), ("ad", XSS), ("x", "1"), ("x", "2 & 3")]
    with serve(create_app(network_url=network_url)) as (url, http):
        response = http.get(f"{url}/", params=params, timeout=5)

    assert response.status_code == 200
    assert "<script" not in response.text
    action = order_form(parse(response)).get("action")
    assert action is not None
    parts = urlsplit(action)
    assert parts.path == "/submit"
    assert parse_qs(parts.query) == {"utm_source": ["fb"], "ad": [XSS], "x": ["1", "2 & 3"]}


def test_a_valid_order_is_forwarded_with_sub1_then_redirected_to_thanks(network: Any) -> None:
    capture, network_url = network
    click_id = str(uuid.uuid4())
    with serve(create_app(network_url=network_url, offer_id="777")) as (url, http):
        response = submit(url, http, "?utm_source=fb", sub1=click_id, **VALID)
        thanks = http.get(f"{url}{urlsplit(response.headers['Location']).path}", timeout=5)

    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/thanks"
    assert [(method, path, ctype) for method, path, ctype, _ in capture.requests] == [
        ("POST", "/orders", "application/x-www-form-urlencoded")
    ]
    assert capture.forms() == [
        {
            "name": [VALID["name"]],
            "phone": [VALID["phone"]],
            "offer_id": ["777"],
            "sub1": [click_id],
        }
    ]
    assert thanks.status_code == 200
    assert "call you" in thanks.text


def test_the_click_id_from_the_middleware_wins_over_the_form(network: Any) -> None:
    capture, network_url = network
    from_middleware = str(uuid.uuid4())
    demo = create_app(network_url=network_url)

    def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["bangi.click_id"] = from_middleware
        return demo(environ, start_response)

    with serve(middleware) as (url, http):
        response = submit(url, http, sub1=str(uuid.uuid4()), **VALID)

    assert response.status_code == 303
    assert capture.forms()[0]["sub1"] == [from_middleware]


def test_the_headline_variant_shows_and_goes_with_the_order_as_sub2(network: Any) -> None:
    capture, network_url = network
    demo = create_app(network_url=network_url)

    def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["bangi.variant"] = "b"  # as bangi-landing's variants option sets it
        return demo(environ, start_response)

    with serve(middleware) as (url, http):
        page = http.get(f"{url}/", timeout=5)
        response = submit(url, http, sub1=str(uuid.uuid4()), **VALID)

    assert "Wake up rested" in page.text and "Aurora smart ring" in page.text
    assert response.status_code == 303
    assert capture.forms()[0]["sub2"] == ["b"]


def test_without_any_click_id_the_order_is_still_forwarded(network: Any) -> None:
    capture, network_url = network
    with serve(create_app(network_url=network_url)) as (url, http):
        response = submit(url, http, **VALID)

    assert response.status_code == 303
    assert capture.forms() == [
        {"name": [VALID["name"]], "phone": [VALID["phone"]], "offer_id": ["1001"]}
    ]


@pytest.mark.parametrize(
    ("name", "phone", "message"),
    [
        ("Ana", "", "enter your phone"),
        ("Ana", "call me", "valid phone"),
        ("Ana", "12345", "valid phone"),
        ("Ana", "1" * 30, "valid phone"),
        ("Ana", "+1 555 123 4567 <b>", "valid phone"),
        ("Ana", "١٢٣٤٥٦٧٨٩", "valid phone"),  # digits, but not ones a network can dial
        ("   ", "+1 555 123 4567", "your name"),
        ("A" * 101, "+1 555 123 4567", "under 100"),
    ],
)
def test_an_invalid_order_is_refused_and_not_forwarded(
    network: Any, name: str, phone: str, message: str
) -> None:
    capture, network_url = network
    with serve(create_app(network_url=network_url)) as (url, http):
        response = submit(url, http, "?utm_source=fb", name=name, phone=phone)

    assert response.status_code == 400
    assert message in response.text
    form = order_form(parse(response))
    assert form.get("action") == "/submit?utm_source=fb"
    assert capture.requests == []


def test_the_refused_form_keeps_what_was_typed_escaped(network: Any) -> None:
    capture, network_url = network
    with serve(create_app(network_url=network_url)) as (url, http):
        response = submit(url, http, name=XSS, phone="nope")

    assert response.status_code == 400
    assert "<script" not in response.text
    name = order_form(parse(response)).find(".//input[@name='name']")
    assert name is not None
    assert name.get("value") == XSS
    assert capture.requests == []


@pytest.mark.parametrize("failure", ["500", "closed port"])
def test_a_network_failure_still_thanks_the_customer(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture = Capture(status="500 Internal Server Error")
    with live_server(capture) as capture_url:
        network_url = f"{capture_url}/orders" if failure == "500" else closed_port_url()
        with (
            serve(create_app(network_url=network_url)) as (url, http),
            caplog.at_level(logging.ERROR, logger="demo_site.app"),
        ):
            sub1 = str(uuid.uuid4())
            response = submit(url, http, sub1=sub1, **VALID)

    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/thanks"
    # The failure is logged by clickId; the customer's personal data stays out of logs.
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert sub1 in messages
    assert VALID["phone"] not in messages
    assert VALID["name"] not in messages
    if failure == "500":
        assert len(capture.requests) == 1


def test_the_network_url_can_come_from_the_environment(
    network: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture, network_url = network
    monkeypatch.setenv("DEMO_NETWORK_URL", network_url)
    with serve(create_app()) as (url, http):
        response = submit(url, http, sub1=str(uuid.uuid4()), **VALID)

    assert response.status_code == 303
    assert len(capture.requests) == 1


def test_without_a_network_url_the_customer_is_still_thanked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEMO_NETWORK_URL", raising=False)
    with serve(create_app()) as (url, http):
        response = submit(url, http, **VALID)

    assert response.status_code == 303
