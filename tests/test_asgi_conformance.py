"""The ASGI door message by message: a direct send/receive recorder around raw ASGI apps.

What a server would see and what the app would see, for the shapes a real
server produces: a body in several messages, a client that goes away
mid-body, an app that raises after starting its response, a response with
no body message, websockets and the lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bangi_landing.asgi import BangiLandingASGI
from bangi_landing.destinations import NetworkOrders
from bangi_landing.sealed import Sealer

from .utils import ADDED, Recorder

PAGE = b'<html><form action="/submit" method="post"><input name="q"></form></html>'
CLICK_ID = "0b0e3a4c-2c47-4b8e-9d0c-7f1e2d3c4b5a"
Message = dict[str, Any]
App = Callable[[Message, Any, Any], Awaitable[None]]


def scope(method: str = "GET", path: str = "/", **extra: Any) -> Message:
    headers = extra.pop("headers", [])
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        **extra,
    }


class Exchange:
    """One request through the middleware: the messages it was given, those it sent."""

    def __init__(self, app: App, incoming: list[Message], **options: Any) -> None:
        self.recorder = Recorder()
        self.flushed: list[float] = []
        self.middleware = BangiLandingASGI(
            app,
            tracker_url="http://127.0.0.1:9",
            campaign_id=1,
            secret_key="asgi-conformance-secret",
            sender=self.recorder,
            **options,
        )
        self.middleware.flush = self.flushed.append  # type: ignore[method-assign,assignment]
        self.incoming = list(incoming)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(3600)  # a real server waits until the client does something
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def run(self, request: Message) -> None:
        asyncio.run(self.middleware(request, self.receive, self.send))

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def header(self, name: bytes) -> bytes | None:
        start = self.sent[0]
        return next((v for n, v in start["headers"] if n == name), None)


def html_app(*chunks: bytes, status: int = 200) -> App:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, chunk in enumerate(chunks):
            more = i < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    return app


def test_a_page_in_one_message_is_rewritten_with_its_exact_length() -> None:
    exchange = Exchange(html_app(PAGE), [])
    exchange.run(scope())
    assert exchange.body.count(b'name="sub1"') == 1
    assert exchange.header(b"content-length") == str(len(exchange.body)).encode()
    assert exchange.header(b"set-cookie") is not None
    assert [e.kind for e in exchange.recorder.events] == ["click"]


def test_a_page_in_pieces_streams_without_a_length() -> None:
    pieces = [PAGE[i : i + 3] for i in range(0, len(PAGE), 3)]
    exchange = Exchange(html_app(*pieces), [])
    exchange.run(scope())
    assert ADDED.sub(b"", exchange.body) == PAGE
    assert exchange.body.count(b'name="sub1"') == 1
    assert exchange.header(b"content-length") is None
    assert all(m.get("more_body", False) for m in exchange.sent[1:-1])
    assert exchange.sent[-1].get("more_body", False) is False


def test_head_and_json_pass_untouched() -> None:
    async def json_app(scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"20")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"f": "<form></form>"}'[:20]})

    exchange = Exchange(json_app, [])
    exchange.run(scope())
    assert exchange.body == b'{"f": "<form></form>"}'[:20]
    exchange = Exchange(html_app(PAGE), [])
    exchange.run(scope("HEAD"))
    assert exchange.body == PAGE  # what the app sent (a server drops a HEAD's body)


def test_a_submit_is_read_and_replayed_to_the_app_message_by_message() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message)
            if not message.get("more_body", False):
                break
        await html_app(b"<p>thanks</p>")(scope, receive, send)

    body = f"sub1={CLICK_ID}&offer=1&phone=%2B1+555+0100".encode()
    incoming = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:], "more_body": False},
    ]
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    exchange = Exchange(app, incoming)
    exchange.run(scope("POST", "/order", headers=headers))
    assert seen == incoming
    [lead] = exchange.recorder.events
    assert (lead.kind, lead.click_id, dict(lead.params)) == (
        "lead",
        CLICK_ID,
        {"offer": "1", "withheldFields": ["phone"]},
    )


def test_an_order_carries_the_clients_address_user_agent_and_referer() -> None:
    body = f"sub1={CLICK_ID}&name=Ana&phone=%2B1+555+0100".encode()
    headers = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"user-agent", b"Mobile Safari"),
        (b"referer", b"https://ads.example/post"),
    ]
    orders = NetworkOrders("http://127.0.0.1:9/orders")
    exchange = Exchange(
        html_app(b"<p>thanks</p>"),
        [{"type": "http.request", "body": body}],
        destinations=[orders],
    )
    exchange.run(scope("POST", "/order", headers=headers, client=("203.0.113.7", 50000)))
    [lead, order] = exchange.recorder.events
    assert "phone" not in lead.params
    assert orders.values_for(order) == {"sub1": CLICK_ID}
    sealed = Sealer("asgi-conformance-secret").open(order.params["sealed"])
    assert sealed == {
        "fields": {"sub1": CLICK_ID, "name": "Ana", "phone": "+1 555 0100"},
        "ip": "203.0.113.7",
        "userAgent": "Mobile Safari",
        "referer": "https://ads.example/post",
    }


def test_a_client_that_goes_away_mid_body_reaches_the_app_as_it_went() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.extend([await receive(), await receive()])

    incoming = [
        {"type": "http.request", "body": b"sub1=", "more_body": True},
        {"type": "http.disconnect"},
    ]
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    exchange = Exchange(app, incoming)
    exchange.run(scope("POST", "/order", headers=headers))
    assert seen == incoming
    assert exchange.sent == [] and exchange.recorder.events == []


def test_a_body_over_the_limit_is_not_read_and_reaches_the_app_whole() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.extend([await receive(), await receive()])
        await html_app(b"ok")(scope, receive, send)

    incoming = [
        {"type": "http.request", "body": f"sub1={CLICK_ID}&".encode(), "more_body": True},
        {"type": "http.request", "body": b"x" * 200, "more_body": False},
    ]
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    exchange = Exchange(app, incoming, max_submit_size=100)
    exchange.run(scope("POST", "/order", headers=headers))  # no content-length: chunked
    assert seen == incoming
    assert exchange.recorder.events == []


def test_an_app_that_raises_after_starting_its_page_raises_to_the_server() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/html")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("the view failed")

    exchange = Exchange(app, [])
    with pytest.raises(RuntimeError, match="the view failed"):
        exchange.run(scope())
    assert exchange.sent == []  # the page's start was held: the server can still answer 500


def test_a_page_that_sends_no_body_message_still_goes_out() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/html")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    exchange = Exchange(app, [])
    exchange.run(scope())
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert exchange.header(b"content-length") == b"0"


def test_websockets_pass_through_untouched() -> None:
    calls: list[tuple[Message, Any, Any]] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    exchange = Exchange(app, [])
    request = {"type": "websocket", "path": "/ws", "headers": []}
    exchange.run(request)
    [(got, receive, send)] = calls
    assert got is request and send == exchange.send and receive == exchange.receive


def test_the_lifespan_shutdown_waits_for_delivery() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    exchange = Exchange(app, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    exchange.run({"type": "lifespan", "asgi": {"version": "3.0"}})
    assert exchange.flushed == [2.0]
    assert [m["type"] for m in exchange.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def test_the_app_reads_the_click_id_from_the_scope() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.append(scope)
        await html_app(PAGE)(scope, receive, send)

    exchange = Exchange(app, [])
    exchange.run(scope(query_string=f"clickId={CLICK_ID}".encode()))
    assert seen[0]["state"]["bangi_click_id"] == seen[0]["bangi.click_id"] == CLICK_ID
    assert exchange.recorder.events == []  # a journey in progress: no second click
