"""The ASGI door: ``BangiLandingASGI(app)`` wraps any ASGI 3 application.

A pure ASGI middleware (no framework's base class), so it goes around
Starlette, FastAPI, Quart, Litestar or anything else that speaks ASGI::

    from bangi_landing.asgi import BangiLandingASGI

    app.add_middleware(BangiLandingASGI, tracker_url="https://dashboard.example.com",
                       campaign_id=42, secret_key="a long random string")

``http`` requests go through the core's steps (:mod:`bangi_landing.core`);
``websocket`` passes through, and ``lifespan`` too, except that the
shutdown waits up to two seconds for pending events to be delivered. The
app reads the clickId at ``scope["state"]["bangi_click_id"]`` (Starlette's
``request.state.bangi_click_id``) and ``scope["bangi.click_id"]``, and a split
test's variant at ``scope["state"]["bangi_variant"]`` and ``scope["bangi.variant"]``.

Nothing here blocks the event loop: a submit's body is read from the
``http.request`` messages (at most ``max_submit_size`` bytes) and replayed
to the app unchanged, and a lead is written to the outbox (an fsync) from a
worker thread before the response starts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .core import VARIANT_KEY, Journey, LandingCore, Meta, StreamRewriter, relay
from .core.landing import logger
from .core.submit import parse_fields

__all__ = ["BangiLandingASGI"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LIFESPAN_FLUSH_TIMEOUT = 2.0

# The request headers the core reads, by their CGI names.
_META_HEADERS = {
    b"cookie": "HTTP_COOKIE",
    b"user-agent": "HTTP_USER_AGENT",
    b"referer": "HTTP_REFERER",  # an order sends it the network
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
    b"sec-purpose": "HTTP_SEC_PURPOSE",
    b"purpose": "HTTP_PURPOSE",
    b"x-moz": "HTTP_X_MOZ",
    b"x-purpose": "HTTP_X_PURPOSE",
}


class BangiLandingASGI(LandingCore):
    """Connect an ASGI landing page to the Bangi tracker.

    :param app: the ASGI application to wrap.
    :param options: the keyword options of :class:`~bangi_landing.core.LandingCore`
        (``tracker_url``, ``campaign_id``, ``secret_key``, ``submit_paths``, ...),
        each falling back to its ``BANGI_*`` environment variable.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app
        super().__init__(**options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._flushing_at_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.start()
        meta = _meta(scope)
        if self.relay is not None and meta["PATH_INFO"] == self.relay_path:
            await self._relay(meta, receive, send)
            return
        try:
            if meta["REQUEST_METHOD"] == "POST" and self.wants_fields(meta):
                # A submit: its body is read first, then replayed to the app.
                body = _ReplayedBody(receive)
                receive = body.receive
                fields = await body.fields(self.max_submit_size, meta)
                journey = self.journey(meta, lambda _: fields)
            else:
                journey = self.journey(meta, _no_fields)
        except Exception:
            logger.exception("bangi-landing: could not read the request; passing it through")
            journey = None
        variant = meta.get(VARIANT_KEY)  # a crawler's too
        if variant is not None:
            scope["bangi.variant"] = variant
            scope.setdefault("state", {})["bangi_variant"] = variant
        if journey is None:
            await self.app(scope, receive, send)
            return
        scope["bangi.click_id"] = journey.click_id
        scope.setdefault("state", {})["bangi_click_id"] = journey.click_id
        responder = _Responder(self, meta, journey, send, secure=scope.get("scheme") == "https")
        await self.app(scope, receive, responder.send)
        if responder.held is not None:
            await responder.finish()

    async def _relay(self, meta: Meta, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        method = meta["REQUEST_METHOD"]
        data: bytes | None = b""
        if method == "POST":
            data = await _ReplayedBody(receive).read(relay.MAX_BODY, _content_length(meta))
        # A status is written to the outbox (and synced to disk) before the answer: off the loop.
        answer = await asyncio.to_thread(
            self.relay.answer,
            method,
            meta["QUERY_STRING"].encode("latin-1"),
            meta.get("CONTENT_TYPE", ""),
            data,
        )
        headers = [(name.lower().encode(), value.encode()) for name, value in answer.headers]
        await send({"type": "http.response.start", "status": answer.code, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _flushing_at_shutdown(self, receive: Receive) -> Receive:
        """``receive`` for a lifespan: at shutdown, pending events get two seconds first."""

        async def receive_and_flush() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.flush, LIFESPAN_FLUSH_TIMEOUT)
            return message

        return receive_and_flush


class _ReplayedBody:
    """The request's body messages: read once by the door, replayed to the app as they came."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._read: deque[Message] = deque()

    async def fields(self, limit: int, meta: Meta) -> dict[str, Any] | None:
        """The submit's fields, if its body is at most ``limit`` bytes of a form or JSON."""
        data = await self.read(limit, _content_length(meta))
        return None if data is None else parse_fields(meta.get("CONTENT_TYPE", ""), data)

    async def read(self, limit: int, length: int) -> bytes | None:
        """The body if at most ``limit`` bytes; None (having read no more than needed) if not."""
        if length > limit:
            return None  # Content-Length says so: nothing read
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            self._read.append(message)
            if message["type"] != "http.request":  # the client went away
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def receive(self) -> Message:
        if self._read:
            return self._read.popleft()
        return await self._receive()


class _Responder:
    """One response on its way out: its decision made at its start, its body rewritten.

    Like Starlette's ``GZipResponder``: a page to rewrite holds its start
    message until the first body message. A body in one message is
    rewritten whole and gets its exact ``content-length``; one that streams
    (``more_body``) loses ``content-length`` and is rewritten piece by piece.
    """

    def __init__(
        self, core: LandingCore, meta: Meta, journey: Journey, send: Send, *, secure: bool
    ) -> None:
        self.core, self.meta, self.journey, self.secure = core, meta, journey, secure
        self._send = send
        self.rewriting = False
        self.held: Message | None = None  # the start message of a page to rewrite
        self.rewriter: StreamRewriter | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body" and self.rewriting:
            await self._body(message)
        else:
            await self._send(message)

    async def finish(self) -> None:
        """After the app: a page that started but sent no body still goes out."""
        await self._body({"type": "http.response.body", "body": b""})

    async def _start(self, message: Message) -> None:
        core = self.core
        try:
            shape = core.responses.get_raw(message["status"], message["headers"])
            events, set_cookie, rewrite = core.decide_shape(self.meta, self.journey, shape)
        except Exception:
            logger.exception("bangi-landing: could not process a response; serving it as is")
            await self._send(message)
            return
        if events:
            if core.is_durable(events[0]):  # a lead: on disk before the answer, off the loop
                await asyncio.to_thread(core.report_all, events)
            else:
                core.report_all(events)  # a click only goes on a queue
        if not (rewrite or set_cookie):
            await self._send(message)
            return
        headers = [*(shape.raw_rewritten if rewrite else shape.raw_kept)]
        if set_cookie:
            cookie = core.cookie_header(self.journey, secure=self.secure)
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        start = {**message, "headers": headers}
        if rewrite:
            self.rewriting, self.held = True, start
        else:
            await self._send(start)

    async def _body(self, message: Message) -> None:
        body, more = message.get("body", b""), message.get("more_body", False)
        start, self.held = self.held, None
        if start is not None and not more:
            # The whole page in one message: rewritten at once, its length known.
            page = self._rewrite_whole(body)
            start["headers"].append((b"content-length", str(len(page)).encode()))
            await self._send(start)
            await self._send({**message, "body": page})
            return
        if start is not None:
            await self._send(start)  # streamed: without content-length
            self.rewriter = StreamRewriter(self.core.pages, self.journey.click_id)
        assert self.rewriter is not None
        data = self.rewriter.feed(body)
        if not more:
            data += self.rewriter.finish()
        await self._send({**message, "body": data})

    def _rewrite_whole(self, body: bytes) -> bytes:
        try:
            return self.core.pages.rewrite(body, self.journey.click_id)
        except Exception:
            logger.exception("bangi-landing: rewriting failed; serving the page as is")
            return body


def _no_fields(meta: Meta) -> None:
    """What a request that is no submit's has to read: nothing."""
    return


def _meta(scope: Scope) -> Meta:
    """The request as the core reads it: CGI-style names, from the ASGI scope."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    meta: Meta = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
    }
    client = scope.get("client")
    if client:  # the visitor's address, which an order sends the network
        meta["REMOTE_ADDR"] = client[0]
    for name, value in scope["headers"]:
        key = _META_HEADERS.get(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        # HTTP/2 sends each cookie in a header of its own: joined, as HTTP/1.1 has them.
        meta[key] = f"{meta[key]}; {text}" if key == "HTTP_COOKIE" and key in meta else text
    return meta


def _content_length(meta: Meta) -> int:
    try:
        return int(meta.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return -1
