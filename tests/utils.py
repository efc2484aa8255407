"""Serve WSGI apps over a real socket on loopback, like whitenoise's test utils."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


@contextmanager
def live_server(app: WSGIApplication) -> Iterator[str]:
    """Yield the base URL (no trailing slash) of ``app`` served by a threaded server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval makes shutdown (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
