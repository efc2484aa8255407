"""The WSGI door: ``BangiLanding(app)`` wraps any WSGI application (PEP 3333).

It speaks WSGI around the core's steps (:mod:`bangi_landing.core`): the
environ is the request the core reads, a submit's body is read from
``wsgi.input`` and handed on byte for byte, and the response is watched
through ``start_response`` and rewritten as it streams.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .core import Journey, LandingCore, Meta, StreamRewriter, relay
from .core.landing import logger
from .core.submit import parse_fields
from .events import Event

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import InputStream, StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["BangiLanding"]


class BangiLanding(LandingCore):
    """Connect a WSGI landing page to the Bangi tracker.

    ::

        from bangi_landing import BangiLanding

        app.wsgi_app = BangiLanding(
            app.wsgi_app,
            tracker_url="https://dashboard.example.com",
            campaign_id=42,
            secret_key="a long random string",
        )

    :param app: the WSGI application to wrap.
    :param options: the keyword options of :class:`~bangi_landing.core.LandingCore`
        (``tracker_url``, ``campaign_id``, ``secret_key``, ``submit_paths``, ...),
        each falling back to its ``BANGI_*`` environment variable.
    """

    def __init__(self, app: WSGIApplication, **options: Any) -> None:
        self.app = app
        super().__init__(**options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.start()
        if self.relay is not None and environ.get("PATH_INFO") == self.relay_path:
            return self._relay(environ, start_response)
        try:
            journey = self.journey(environ, self._read_submit)
        except Exception:
            logger.exception("bangi-landing: could not read the request; passing it through")
            journey = None
        if journey is None:
            return self.app(environ, start_response)
        response = _Response(self, environ, journey, start_response)
        app_iter = self.app(environ, response.start_response)
        if response.started:
            # The app has returned, so its response is final: report now, before
            # the server sends anything. A generator app starts when iterated.
            response.report_events()
            if not response.rewriting:
                return app_iter  # nothing to rewrite: the app's iterable as is (file_wrapper too)
            if response.rewriter is None and response.length >= 0:
                # A page of known length usually comes in one piece: then it is
                # read here and rewritten at once, and the server gets a list.
                whole, app_iter = _whole_body(app_iter, response.length)
                if whole is not None:
                    return [response.rewrite_whole(whole)]
        return _RewrittenBody(app_iter, response)

    def _read_submit(self, environ: Meta) -> dict[str, Any] | None:
        """Read and parse a submit's body, leaving an identical body for the app."""
        body = _read_body(environ, self.max_submit_size)
        if body is None:
            return None
        return parse_fields(environ.get("CONTENT_TYPE", ""), body)

    def _relay(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        assert self.relay is not None
        method = environ.get("REQUEST_METHOD", "GET")
        answer = self.relay.answer(
            method,
            environ.get("QUERY_STRING", "").encode("latin-1"),  # PEP 3333: the bytes as latin-1
            environ.get("CONTENT_TYPE", ""),
            _read_body(environ, relay.MAX_BODY) if method == "POST" else b"",
        )
        start_response(f"{answer.code} {answer.reason}", answer.headers)
        return [answer.body]


def _read_body(environ: Meta, limit: int) -> bytes | None:
    """The request body, if at most ``limit`` bytes; the app can still read the same bytes.

    Over the limit, the body is read no further than needed to know it (not at
    all when ``Content-Length`` says so) and None is returned.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    stream = environ["wsgi.input"]
    if length > limit:
        logger.info("bangi-landing: a body of %d bytes not read (limit %d)", length, limit)
        return None
    body: bytes
    if length >= 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read(limit + 1)
        if len(body) > limit:
            environ["wsgi.input"] = _ReplayStream(body, stream)
            logger.info("bangi-landing: a body over %d bytes not read", limit)
            return None
    else:
        body = b""  # PEP 3333: no Content-Length, no body
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


class _Response:
    """One response's decisions, made when the app calls ``start_response``."""

    __slots__ = (
        "deferred",
        "environ",
        "events",
        "journey",
        "length",
        "middleware",
        "rewriter",
        "rewriting",
        "server_start_response",
        "server_write",
        "started",
    )

    def __init__(
        self,
        middleware: LandingCore,
        environ: WSGIEnvironment,
        journey: Journey,
        server_start_response: StartResponse,
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.journey = journey
        self.server_start_response = server_start_response
        self.started = False
        self.rewriting = False  # the body gets the clickId
        self.length = -1  # the app's Content-Length: a first chunk this long is the whole body
        self.rewriter: StreamRewriter | None = None  # made when the body comes in pieces
        self.events: tuple[Event, ...] = ()  # reported once the response is final
        self.deferred: tuple[str, list[tuple[str, str]]] | None = None  # see start_response
        self.server_write: Callable[[bytes], object] = _no_write

    def report_events(self) -> None:
        events, self.events = self.events, ()
        self.middleware.report_all(events)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        self.started = True
        if exc_info is None:
            try:
                headers = self._decide(status, headers)
            except Exception:
                logger.exception("bangi-landing: could not process a response; serving it as is")
                self.rewriting = False
        else:
            # An error page replaces the response: no click or lead, no rewriting.
            self.rewriting = False
            self.events = ()
        if not self.rewriting:
            self.deferred = None  # an error page replaces a response not yet told the server
            return self.server_start_response(status, headers, exc_info)
        if self.length >= 0:
            # A page of known length is likely whole in its first chunk: the server
            # hears of the response once the rewritten length is known, so it can
            # send a Content-Length rather than chunks (see send_start).
            self.deferred = (status, headers)
        else:
            self.server_write = self.server_start_response(status, headers, None)

        def rewriting_write(data: bytes) -> None:
            self.send_start()
            self.server_write(self.feed(data))

        return rewriting_write

    def send_start(self, length: int | None = None) -> None:
        """Tell the server of a deferred response, with its ``length`` if the body is whole.

        Before the first chunk is handed to the server (PEP 3333).
        """
        if self.deferred is not None:
            status, headers = self.deferred
            self.deferred = None
            if length is not None:
                headers = [*headers, ("Content-Length", str(length))]
            self.server_write = self.server_start_response(status, headers, None)

    def rewrite_whole(self, body: bytes) -> bytes:
        """The whole body at once: rewritten from the page cache, its length told the server."""
        self.rewriting = False  # anything after it breaks the app's own Content-Length
        try:
            body = self.middleware.pages.rewrite(body, self.journey.click_id)
        except Exception:
            logger.exception("bangi-landing: rewriting failed; serving the page as is")
        self.send_start(len(body))
        return body

    def feed(self, data: bytes) -> bytes:
        """One piece of a streamed body, rewritten as far as it can be yet."""
        self.send_start()
        if self.rewriter is None:
            self.rewriter = StreamRewriter(self.middleware.pages, self.journey.click_id)
        return self.rewriter.feed(data)

    def finish(self) -> bytes:
        """The end of a streamed body: whatever the rewriter still holds."""
        self.rewriting = False
        return self.rewriter.finish() if self.rewriter is not None else b""

    def _decide(self, status: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        middleware, journey, environ = self.middleware, self.journey, self.environ
        shape = middleware.responses.get(status, headers)
        self.events, set_cookie, rewrite = middleware.decide_shape(environ, journey, shape)
        if rewrite:
            self.rewriting = True
            self.length = shape.length
            changed = [*shape.rewritten]
        elif set_cookie:
            changed = [*shape.kept]
        else:
            return headers
        if set_cookie:
            secure = environ.get("wsgi.url_scheme") == "https"
            changed.append(("Set-Cookie", middleware.cookie_header(journey, secure=secure)))
        return changed


def _no_write(data: bytes) -> None:
    raise AssertionError("write() before start_response()")


def _whole_body(app_iter: Iterable[bytes], length: int) -> tuple[bytes | None, Iterable[bytes]]:
    """The body, if its first chunk is all ``length`` (its Content-Length) bytes of it.

    Then the app's iterable is closed without asking for more: PEP 3333 tells
    a server to stop iterating once Content-Length bytes have come, and a
    chunk past them could never be sent. Otherwise None, and an iterable of
    the same chunks (the first, already read, then the rest) that closes the
    app's. Either way the app's iterable is closed once.
    """
    if isinstance(app_iter, (list, tuple)) and not hasattr(app_iter, "close"):
        whole = len(app_iter) > 0 and len(app_iter[0]) == length
        return (app_iter[0] if whole else None), app_iter
    chunks = iter(app_iter)
    try:
        first = next(chunks, None)
    except BaseException:
        _close(app_iter)
        raise
    if first is None or len(first) != length:
        return None, _Chunks([] if first is None else [first], chunks, app_iter)
    _close(app_iter)
    return first, ()


class _Chunks:
    """Chunks already read, then the rest of the app's iterable, which it closes."""

    __slots__ = ("_app_iter", "_read", "_rest")

    def __init__(self, read: list[bytes], rest: Iterator[bytes], app_iter: Iterable[bytes]) -> None:
        self._read, self._rest, self._app_iter = read, rest, app_iter

    def __iter__(self) -> Iterator[bytes]:
        yield from self._read
        yield from self._rest

    def close(self) -> None:
        _close(self._app_iter)


def _close(app_iter: Iterable[bytes]) -> None:
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()


class _RewrittenBody:
    """The app's body with each chunk passed through the response's rewriting, streamed.

    Whether to rewrite is looked up per chunk: a generator app calls
    ``start_response`` only when first iterated.
    """

    def __init__(self, app_iter: Iterable[bytes], response: _Response) -> None:
        self._app_iter = app_iter
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        for chunk in self._app_iter:
            response.report_events()  # the body has begun: the response is final
            if not response.rewriting:
                yield chunk
            elif response.rewriter is None and len(chunk) == response.length:
                yield response.rewrite_whole(chunk)
                break  # all Content-Length bytes: stop, as a server would (PEP 3333)
            else:
                # PEP 3333: yield (even b"") for every chunk, never wait for more.
                yield response.feed(chunk)
        response.report_events()  # an empty body
        response.send_start()
        if response.rewriting:
            tail = response.finish()
            if tail:
                yield tail

    def close(self) -> None:
        _close(self._app_iter)


class _ReplayStream:
    """An input stream that returns ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: InputStream) -> None:
        self._head = io.BytesIO(head)
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        data = self._head.read(size)
        if size < 0:
            return data + self._stream.read()
        if len(data) < size:
            data += self._stream.read(size - len(data))
        return data

    def readline(self, size: int = -1) -> bytes:
        line = self._head.readline(size)
        if line.endswith(b"\n") or (size >= 0 and len(line) >= size):
            return line
        return line + self._stream.readline(-1 if size < 0 else size - len(line))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")
