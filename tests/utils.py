"""Serve WSGI apps over a real socket on loopback, like whitenoise's test utils."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from socketserver import BaseServer
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server as wsgiref_make_server

from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


@contextmanager
def live_server(app: WSGIApplication, port: int = 0) -> Iterator[str]:
    """Yield the base URL (no trailing slash) of ``app`` served by a threaded server."""
    with _serving(make_server("127.0.0.1", port, app, threaded=True)) as url:
        yield url


@contextmanager
def silent_tracker() -> Iterator[str]:
    """The URL of a tracker that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(100)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


class Sink:
    """A tracker stand-in: records every request it gets, then answers as told.

    A request is recorded as soon as its body has arrived, before any
    ``delay``: like a real tracker, it may have the event although the client
    gave up waiting for the answer.
    """

    def __init__(self) -> None:
        self.status = 201
        self.statuses: dict[str, int] = {}  # eventIds answered with a status of their own
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | None = None  # None: "{}", or a JSON error from 400 on
        self.delay = 0.0
        self.received: list[dict[str, object]] = []
        self.in_flight = self.most_in_flight = 0  # requests being answered at once
        self._changed = threading.Condition()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        record = json.loads(body) if body else {}
        record["path"] = environ["PATH_INFO"]
        record["query"] = environ.get("QUERY_STRING", "")
        with self._changed:
            self.received.append(record)
            self._changed.notify_all()
            status = self.statuses.get(str(record.get("eventId")), self.status)
            headers, delay, answer = list(self.headers), self.delay, self.body
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(delay)
        with self._changed:
            self.in_flight -= 1
        start_response(f"{status} Sink", [("Content-Type", "application/json"), *headers])
        if answer is None:
            answer = b'{"error": "as told"}' if status >= 400 else b"{}"
        return [answer]

    def event_ids(self, path: str = "") -> list[str]:
        with self._changed:
            return [str(r["eventId"]) for r in self.received if r["path"].endswith(path)]  # type: ignore[union-attr]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` requests came in."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.received) >= count, timeout)


def raw_get(url: str, target: bytes) -> tuple[int, dict[str, Any]]:
    """GET ``target`` as these very bytes, which HTTP client libraries would normalise."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n" % target)
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def reference_server(app: WSGIApplication) -> Iterator[str]:
    """Like live_server, on the stdlib's wsgiref server, which passes wsgiref.validate."""
    with _serving(wsgiref_make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)) as url:
        yield url


@contextmanager
def _serving(server: BaseServer) -> Iterator[str]:
    host, port = server.server_address[:2]
    # A short poll interval makes shutdown (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
