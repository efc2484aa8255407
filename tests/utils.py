"""Serve WSGI apps over a real socket on loopback, like whitenoise's test utils."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import BaseServer
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server as wsgiref_make_server

from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


@contextmanager
def live_server(app: WSGIApplication) -> Iterator[str]:
    """Yield the base URL (no trailing slash) of ``app`` served by a threaded server."""
    with _serving(make_server("127.0.0.1", 0, app, threaded=True)) as url:
        yield url


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
