"""The demo landing over real HTTP; bangi-landing around it forwards orders to a capture server.

The demo has no order code: the orders tested here are the middleware's, as
``bangi-landing demo`` wires it (``cli.DEMO_ORDER_FIELDS``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import Element

import html5lib
import pytest
import requests

from bangi_landing import BangiLanding
from bangi_landing.cli import DEMO_ORDER_FIELDS
from demo_site import create_app

from .conftest import SECRET
from .utils import form_click_ids, live_server

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
        return [b'{"status": "ok", "id": 1}']

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


@dataclass
class Demo:
    url: str
    http: requests.Session
    middleware: BangiLanding

    def delivered(self) -> None:
        """Wait until the middleware has sent what it can."""
        assert self.middleware.sender.flush(10)  # type: ignore[attr-defined]


@contextmanager
def wrapped(network_url: str, tmp_path: Path, **options: Any) -> Iterator[Demo]:
    """The demo in bangi-landing, forwarding its orders to ``network_url`` as the demo does."""
    demo = create_app()
    middleware = BangiLanding(
        demo.wsgi_app,
        secret_key=SECRET,
        order_url=network_url,
        order_fields=DEMO_ORDER_FIELDS,
        order_success=("status", "ok"),
        outbox=tmp_path / "outbox.sqlite3",
        **options,
    )
    demo.wsgi_app = middleware  # type: ignore[method-assign]
    try:
        with serve(demo) as (url, http):
            yield Demo(url, http, middleware)
    finally:
        middleware.close()


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


def click_id_of(url: str, http: requests.Session, query: str = "") -> str:
    """A visitor's view of the order page: the clickId in its form."""
    [click_id] = form_click_ids(http.get(f"{url}/{query}", timeout=5).text)
    return click_id


def test_product_page_has_the_order_form_and_no_tracking_of_its_own() -> None:
    with serve(create_app()) as (url, http):
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


def test_query_string_is_kept_in_the_form_action_and_escaped() -> None:
    params = [("utm_source", "fb"), ("ad", XSS), ("x", "1"), ("x", "2 & 3")]
    with serve(create_app()) as (url, http):
        response = http.get(f"{url}/", params=params, timeout=5)

    assert response.status_code == 200
    assert "<script" not in response.text
    action = order_form(parse(response)).get("action")
    assert action is not None
    parts = urlsplit(action)
    assert parts.path == "/submit"
    assert parse_qs(parts.query) == {"utm_source": ["fb"], "ad": [XSS], "x": ["1", "2 & 3"]}


def test_a_valid_order_reaches_the_network_with_sub1_and_the_customer_is_thanked(
    network: Any, tmp_path: Path
) -> None:
    capture, network_url = network
    with wrapped(network_url, tmp_path) as demo:
        click_id = click_id_of(demo.url, demo.http, "?utm_source=fb")
        response = submit(demo.url, demo.http, "?utm_source=fb", sub1=click_id, **VALID)
        thanks = demo.http.get(f"{demo.url}{urlsplit(response.headers['Location']).path}")
        demo.delivered()

    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/thanks"
    assert [(method, path, ctype) for method, path, ctype, _ in capture.requests] == [
        ("POST", "/orders", "application/x-www-form-urlencoded")
    ]
    assert capture.forms() == [
        {
            "offer_id": ["1001"],
            "name": [VALID["name"]],
            "phone": [VALID["phone"]],
            "sub1": [click_id],
        }
    ]
    assert thanks.status_code == 200
    assert "call you" in thanks.text


def test_the_headline_variant_shows_and_goes_with_the_order_as_sub2(
    network: Any, tmp_path: Path
) -> None:
    capture, network_url = network
    with wrapped(network_url, tmp_path, variants={"b": 1}) as demo:
        page = demo.http.get(f"{demo.url}/", timeout=5)
        [click_id] = form_click_ids(page.text)
        response = submit(demo.url, demo.http, sub1=click_id, **VALID)
        demo.delivered()

    assert "Wake up rested" in page.text and "Aurora smart ring" in page.text
    assert response.status_code == 303
    assert capture.forms()[0]["sub2"] == ["b"]


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
    network: Any, tmp_path: Path, name: str, phone: str, message: str
) -> None:
    capture, network_url = network
    with wrapped(network_url, tmp_path) as demo:
        click_id = click_id_of(demo.url, demo.http)
        response = submit(
            demo.url, demo.http, "?utm_source=fb", name=name, phone=phone, sub1=click_id
        )
        demo.delivered()

    assert response.status_code == 400
    assert message in response.text
    form = order_form(parse(response))
    assert form.get("action") == "/submit?utm_source=fb"
    assert capture.requests == []


def test_the_refused_form_keeps_what_was_typed_escaped() -> None:
    with serve(create_app()) as (url, http):
        response = submit(url, http, name=XSS, phone="nope")

    assert response.status_code == 400
    assert "<script" not in response.text
    name = order_form(parse(response)).find(".//input[@name='name']")
    assert name is not None
    assert name.get("value") == XSS


@pytest.mark.parametrize("failure", ["500", "closed port"])
def test_with_the_network_failing_the_customer_is_thanked_and_the_order_waits(
    failure: str, tmp_path: Path
) -> None:
    capture = Capture(status="500 Internal Server Error")
    with live_server(capture) as capture_url:
        network_url = f"{capture_url}/orders" if failure == "500" else closed_port_url()
        with wrapped(network_url, tmp_path) as demo:
            response = submit(demo.url, demo.http, sub1=click_id_of(demo.url, demo.http), **VALID)
            outbox = demo.middleware.sender.outbox  # type: ignore[attr-defined]
            [counts] = outbox.counts().values()

    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/thanks"
    assert counts == {"pending": 1, "dead": 0}  # retried until the network takes it


def test_without_bangi_landing_the_customer_is_still_thanked() -> None:
    with serve(create_app()) as (url, http):
        response = submit(url, http, **VALID)

    assert response.status_code == 303
